"""Output containers ``torch.export`` cannot flatten by itself: transformers' key/value caches.

A decoder called with ``use_cache=True`` (GPT-2, OPT, Llama, Mistral, T5, BART, Whisper by
default) returns its cache (``DynamicCache``; ``EncoderDecoderCache`` for encoder-decoders) in its
``ModelOutput``. ``torch.export`` refuses outputs of types that are not pytree nodes, so
``kiln.compile`` registers these before exporting: their tensors (every layer's keys and values)
become outputs of the exported graph, computed in the engines like the hidden states, and the
compiled module rebuilds the cache objects around them, so it returns what the model returns.

The registration is global (as transformers' own export helper's is) and is done only when
transformers is already imported: kiln does not depend on it.
"""

from __future__ import annotations

import sys

import torch.utils._pytree as pytree

__all__ = ["register_output_containers"]


def _register_encoder_decoder_cache(cls) -> None:
    # Its two halves are DynamicCaches, flattened by their own registration.
    def flatten(cache):
        return [cache.self_attention_cache, cache.cross_attention_cache], None

    def unflatten(children, _context):
        return cls(*children)

    def flatten_with_keys(cache):
        children, context = flatten(cache)
        keys = [pytree.GetAttrKey("self_attention_cache"),
                pytree.GetAttrKey("cross_attention_cache")]
        return list(zip(keys, children)), context

    pytree.register_pytree_node(cls, flatten, unflatten,
                                serialized_type_name=f"{cls.__module__}.{cls.__name__}",
                                flatten_with_keys_fn=flatten_with_keys)


def register_output_containers() -> list[str]:
    """Registers transformers' DynamicCache and EncoderDecoderCache as pytree nodes (once; no-op
    without transformers or where they are registered already). Returns the names registered
    now."""
    cache_utils = sys.modules.get("transformers.cache_utils")
    if cache_utils is None:
        return []
    registered = []
    dynamic = getattr(cache_utils, "DynamicCache", None)
    if dynamic is not None and dynamic not in pytree.SUPPORTED_NODES:
        try:
            from transformers.integrations.executorch import register_dynamic_cache_export_support
        except ImportError:  # an older or newer transformers: the export then names the type
            register_dynamic_cache_export_support = None
        if register_dynamic_cache_export_support is not None:
            register_dynamic_cache_export_support()
            registered.append(dynamic.__name__)
    encoder_decoder = getattr(cache_utils, "EncoderDecoderCache", None)
    if (encoder_decoder is not None and dynamic in pytree.SUPPORTED_NODES
            and encoder_decoder not in pytree.SUPPORTED_NODES):
        _register_encoder_decoder_cache(encoder_decoder)
        registered.append(encoder_decoder.__name__)
    return registered
