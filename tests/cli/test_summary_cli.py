"""`ccq summary`: the contract outside checks rely on (`--json` with top-level `params` and `flops`)."""

import json

from typer.testing import CliRunner

from ccq.cli import app
from ccq.errors import CCQError

runner = CliRunner()


def test_summary_json_has_params_and_flops_at_top_level():
    result = runner.invoke(app, ["summary", "--preset", "official", "--patch", "32", "96", "96", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["params"] == 28_062_881
    assert isinstance(data["flops"], int) and data["flops"] > 1e11
    assert sum(data["params_by_part"].values()) == data["params"]


def test_summary_dodnet_default_patch():
    result = runner.invoke(app, ["summary", "--preset", "dodnet", "--json"])
    assert json.loads(result.output)["params"] == 17_329_528


def test_summary_text_lists_parts():
    result = runner.invoke(app, ["summary", "--preset", "official"])
    assert result.exit_code == 0
    assert "attentive_skips" in result.output and "28,321,433" in result.output


def test_unknown_preset_is_one_line_error_with_suggestion():
    result = runner.invoke(app, ["summary", "--preset", "ofical"])
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)
    assert "did you mean 'official'" in str(result.exception)


def test_patch_not_divisible_is_refused():
    result = runner.invoke(app, ["summary", "--preset", "official", "--patch", "30", "96", "96"])
    assert result.exit_code != 0
    assert "divisible by 16" in str(result.exception)


def test_config_that_is_not_an_object_names_the_file(tmp_path):
    path = tmp_path / "model.json"
    for text, kind in (("[1, 2]", "list"), ('{"model": 3}', "int")):
        path.write_text(text)
        result = runner.invoke(app, ["summary", "--config", str(path)])
        assert result.exit_code != 0 and isinstance(result.exception, CCQError)
        message = str(result.exception)
        assert message.startswith(f"{path}: expected a JSON object of ModelConfig fields") and kind in message


def test_a_checkpoint_json_shows_each_tasks_working_grid(tmp_path):
    from ccq.data.collection import load_collection
    from ccq.data.preprocessing import official_data_path
    from ccq.models import get_preset

    mots = load_collection("mots")
    meta = {
        "model": get_preset("tiny", num_tasks=7).to_dict(),
        "preprocessing": official_data_path(mots.tasks).replace(patch_size=(16, 32, 32)).to_dict(),
        "collection": mots.to_dict(),
    }
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps(meta))
    text = runner.invoke(app, ["summary", "--config", str(path)])
    assert text.exit_code == 0, text.output
    assert "kidney          0.76 x 0.76 x 3 mm, IPL" in text.output
    assert "liver           1.5 x 0.8 x 0.8 mm, SLP" in text.output
    data = json.loads(runner.invoke(app, ["summary", "--config", str(path), "--json"]).output)
    assert data["grids"]["kidney"] == {"spacing": [0.76, 0.76, 3.0], "axes": "IPL"}
    plain = runner.invoke(app, ["summary", "--preset", "tiny", "--json"])
    assert "grids" not in json.loads(plain.output)
