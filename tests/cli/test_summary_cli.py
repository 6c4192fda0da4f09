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
