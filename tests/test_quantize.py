import torch
from torch import nn

from tessera.quantize import quantize_int8


def test_linear_layers_become_int8_and_outputs_stay_close():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 32))
    x = torch.randn(16, 64)
    quantized = quantize_int8(model)
    assert all(type(m) is nn.Linear for m in model if not isinstance(m, nn.GELU))  # the original is untouched
    assert all("quantized" in type(m).__module__ for m in quantized if not isinstance(m, nn.GELU))
    ref, out = model(x), quantized(x)
    assert not torch.equal(ref, out)  # really int8 arithmetic ...
    assert torch.nn.functional.cosine_similarity(ref, out).min() > 0.99  # ... close to float32


def test_torch_transformer_layers_keep_float_weights_and_still_run():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(32, 8)).eval()
    x = torch.randn(3, 5, 32)
    quantized = quantize_int8(model)
    assert "quantized" in type(quantized[1]).__module__  # the head is int8 ...
    assert type(quantized[0].layers[0].linear1) is nn.Linear  # ... the transformer layer's own Linears are not
    with torch.no_grad():
        assert torch.nn.functional.cosine_similarity(model(x).flatten(1), quantized(x).flatten(1)).min() > 0.99
