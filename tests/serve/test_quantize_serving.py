import numpy as np


def test_served_models_load_quantized(built):
    from tessera.serve import load_models

    plain = load_models(built.model, built.index, None)
    quantized = load_models(built.model, built.index, None, quantize=True)

    def modules(model):
        return {type(m).__module__ for m in model.modules()}

    assert not any("quantized" in n for n in modules(plain["searcher"].embedder.model))
    assert any("quantized" in n for n in modules(quantized["searcher"].embedder.model))
    assert any("quantized" in n for n in modules(quantized["predictor"].model))
    a = plain["predictor"].predict_proba(built.table).to_numpy()
    b = quantized["predictor"].predict_proba(built.table).to_numpy()
    assert np.abs(a - b).max() < 0.1
