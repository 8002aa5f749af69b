// The C API's registry of live handles: every kiln_engine / kiln_context the API returned and has
// not released. Each call looks its handle up before touching it, so a released, never-issued or
// wrong-kind handle is a clear error (KILN_ERROR_INVALID_ARGUMENT) rather than a read of freed
// memory. What it cannot catch: an address reused by a later handle of the same kind (the call then
// acts on that handle) and a release racing a call on another thread (kiln.h says both are
// undefined).
#pragma once

namespace kiln::capi {

enum class HandleKind { kEngine, kContext };

// Records `handle` as live. Needs: a pointer not live already. Throws std::bad_alloc.
void register_handle(const void* handle, HandleKind kind);
// Forgets `handle`. Returns false (and forgets nothing) when it is not a live handle of `kind`.
bool unregister_handle(const void* handle, HandleKind kind) noexcept;
// Throws kInvalidArgument naming `call` and `what` when `handle` is NULL or not a live handle of
// `kind` (released, never returned by kiln, or the other kind).
void require_live_handle(const void* handle, HandleKind kind, const char* call, const char* what);

}  // namespace kiln::capi
