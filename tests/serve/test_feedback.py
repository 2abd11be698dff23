"""Feedback becomes training data: export a table from the server's database, fine-tune the model on it."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from tessera.cli import app


def predict_and_correct(client, headers, built, i: int, correction) -> str:
    files = {"image": ("x.png", (built.table.parent / f"img/{i}.png").read_bytes(), "image/png"),
             "audio": ("x.wav", (built.table.parent / f"aud/{i}.wav").read_bytes(), "audio/wav")}
    pred = client.post("/v1/predict", files=files, data={"caption": "a red square", "price": "0.1", "color": "y"}, headers=headers).json()
    feedback = {"request_id": pred["request_id"], "prediction": pred["label"]}
    feedback.update({"correction": correction} if correction is not None else {"rating": 1})
    assert client.post("/v1/feedback", json=feedback, headers=headers).status_code == 201
    return pred["label"]


def test_export_and_fine_tune_through_the_cli(built, make_client, tmp_path) -> None:
    from tessera.predictor import Predictor

    client, headers = make_client()
    for i in range(6):
        predict_and_correct(client, headers, built, i, 3)  # corrections
    confirmed = predict_and_correct(client, headers, built, 7, None)  # a like keeps the prediction as the label
    search = client.post("/v1/search", json={"query": [{"input": "text", "text": "a blue square"}], "k": 1}, headers=headers).json()
    client.post("/v1/feedback", json={"request_id": search["request_id"], "item_id": search["results"][0]["id"], "rating": -1}, headers=headers)
    db, out = tmp_path / "feedback.db", tmp_path / "feedback.parquet"

    runner = CliRunner()
    r = runner.invoke(app, ["feedback", "export", str(db), str(out)])
    assert r.exit_code == 0, r.output
    table = pd.read_parquet(out)
    fit_rows = table[table["label"].notna()]
    assert len(fit_rows) == 7 and list(fit_rows["label"].astype(int))[:6] == [3] * 6
    assert int(fit_rows["label"].iloc[-1]) == confirmed
    assert fit_rows["image"].iloc[0][:8] == b"\x89PNG\r\n\x1a\n" and fit_rows["caption"].iloc[0] == "a red square"
    rated = table[table["rating"].notna()]
    assert len(rated) == 1 and rated["rating"].iloc[0] == -1 and rated["query_caption#0"].iloc[0] == "a blue square"

    before = Predictor.load(built.model)
    r = runner.invoke(app, ["fit", "--finetune", str(built.model), "--extra-data", str(out), "--epochs", "2", "--output", str(tmp_path / "tuned")])
    assert r.exit_code == 0, r.output
    tuned = Predictor.load(tmp_path / "tuned")
    assert any(h.get("fine_tune") for h in tuned.result.history)
    rows = fit_rows.drop(columns=["request_id"])
    p_before = before.predict_proba(rows)["3"].mean()
    p_after = tuned.predict_proba(rows)["3"].mean()
    assert p_after > p_before  # the model moved toward the corrections


def test_fine_tune_refuses_unknown_labels_and_missing_target(built, tmp_path) -> None:
    from tessera.errors import DataError, SchemaError
    from tessera.finetune import fine_tune

    with pytest.raises(DataError, match="not seen in training"):
        fine_tune(built.model, [pd.DataFrame({"caption": ["a red square"], "label": [9]})], epochs=1)
    with pytest.raises(SchemaError, match="no target column"):
        fine_tune(built.model, [pd.DataFrame({"caption": ["a red square"]})], epochs=1)


def test_keys_cli_add_list_revoke(tmp_path) -> None:
    from tessera.serve.auth import KeyStore

    runner = CliRunner()
    keys = tmp_path / "keys.json"
    r = runner.invoke(app, ["serve", "keys", "add", "alice", "--keys", str(keys), "--rate-per-minute", "60"])
    assert r.exit_code == 0, r.output
    key = r.output.strip().splitlines()[-1]
    assert key.startswith("tsk_") and key not in keys.read_text()
    record, why = KeyStore(keys).verify(key)
    assert why == "" and record.rate_per_minute == 60
    r = runner.invoke(app, ["serve", "keys", "revoke", record.id, "--keys", str(keys)])
    assert r.exit_code == 0 and KeyStore(keys).verify(key) == (None, "revoked")
    assert "alice" in runner.invoke(app, ["serve", "keys", "list", "--keys", str(keys)]).output


def test_serve_without_keys_file_is_one_clear_error(tmp_path) -> None:
    from tessera.errors import TesseraError

    r = CliRunner().invoke(app, ["serve", "--index", str(tmp_path), "--keys", str(tmp_path / "none.json")])
    assert r.exit_code != 0 and isinstance(r.exception, TesseraError) and "tessera serve keys add" in str(r.exception)


def test_monitor_command_prints_drift_from_a_live_server(live_server) -> None:
    import httpx

    url, key, _ = live_server
    headers = {"Authorization": f"Bearer {key}"}
    for text in ("a red square", "a blue square at night"):
        assert httpx.post(url + "/v1/embed", json={"input": "text", "text": text}, headers=headers).status_code == 200
    r = CliRunner().invoke(app, ["monitor", "--url", url, "--key", key])
    assert r.exit_code == 0, r.output
    assert "embedding drift" in r.output and "text" in r.output
    bad = CliRunner().invoke(app, ["monitor", "--url", url, "--key", "tsk_0000_nope"])
    assert bad.exit_code != 0 and "401" in str(bad.exception)
