"""Int8 weights for CPU inference: dynamic quantisation of a model's Linear layers.

A small transformer on a CPU without bf16 or int8 matrix units spends its time in Linear
layers. Storing their weights as int8 (one scale per output row) and quantising the
activations on the fly is the cheapest speed-up there is: no calibration data, no export,
and the model stays a torch module. It costs a little accuracy, so it is an opt-in for
serving (``tessera serve --quantize``); training and saved models stay float32.
``benchmarks/serve.py`` measures the speed-up and how far the vectors move.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

TORCH_TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) whose ``nn.Linear`` layers compute in int8.

    Layers inside torch's own ``nn.Transformer*Layer`` keep float weights: those modules
    read ``linear.weight`` as a tensor on their inference fast path, which an int8 layer
    does not have. Hugging Face models and Tessera's other layers are quantised.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    transformer_layers = [name for name, m in model.named_modules() if isinstance(m, TORCH_TRANSFORMER_LAYERS)]
    spec = {
        name: per_channel_dynamic_qconfig
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not any(name.startswith(f"{t}.") for t in transformer_layers)
    }
    with warnings.catch_warnings():
        # torch.ao.quantization is slated to move to torchao; its eager dynamic path still ships
        # and still runs on the fbgemm x86 kernels, which torchao's eager path does not beat.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model.eval(), spec, dtype=torch.qint8, inplace=False)
