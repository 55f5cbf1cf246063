"""Typed method configs: every method's options are declared, typed and round-trip through
recipe.json; an option a method lacks is a one-line error naming the method and its valid
options, from the CLI and from a recipe file; recipes of the previous layout still load."""

import json

import pytest
from click.testing import CliRunner

from edgecore.errors import GPruneError
from gprune.methods import METHOD_CONFIGS, method_config
from gprune.methods.configs import FlapConfig, GPruneConfig
from gprune.recipe import PruneRecipe
from gprune_edge.cli import cli


@pytest.mark.parametrize("name", list(METHOD_CONFIGS))
def test_every_method_config_round_trips_through_recipe_json(name):
    recipe = PruneRecipe(model="some/dir", sparsity=0.25, method=method_config(name))
    again = PruneRecipe.from_dict(json.loads(recipe.to_json()))
    assert again == recipe and type(again.method) is METHOD_CONFIGS[name]


def test_unknown_option_names_the_method_and_its_options():
    with pytest.raises(GPruneError, match=r"method 'flap' has no option 'reliability'; valid options: bias_comp, robust"):
        method_config("flap", {"reliability": False})


@pytest.mark.parametrize("options, needle", [({"modules": "abc"}, "'modules' must be int"),
                                             ({"lam": True}, "'lam' must be float"),
                                             ({"lam": float("nan")}, "finite"),
                                             ({"metric": "l2"}, "'flap' or 'wanda-sp'"),
                                             ({"modules": 0}, "at least 1")])
def test_mistyped_or_out_of_range_options_are_refused(options, needle):
    with pytest.raises(GPruneError, match=needle):
        method_config("gprune", options)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_cli_flag_for_another_method_is_an_error(tmp_path):
    # this was silently ignored: flap has no reliability switch
    line = one_error_line(run("prune", "--method", "flap", "--option", "reliability=false", "-s", 0.2, "--out", tmp_path / "o"))
    assert "method 'flap' has no option 'reliability'" in line and "bias_comp, robust" in line
    assert not (tmp_path / "o").exists()


def test_cli_unknown_option_is_an_error(tmp_path):
    line = one_error_line(run("prune", "--method", "magnitude", "--option", "bias_comp=true", "-s", 0.2,
                              "--out", tmp_path / "o"))
    assert "method 'magnitude' has no option 'bias_comp'; valid options: allocation" in line


def test_recipe_file_with_an_unknown_option_is_an_error(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"version": 2, "sparsity": 0.2, "method": {"name": "wanda-sp", "robust": True}}))
    line = one_error_line(run("prune", "--recipe", path, "--out", tmp_path / "o"))
    assert "method 'wanda-sp' has no option 'robust'; valid options: bias_comp" in line


def test_help_documents_every_method_option():
    text = run("prune", "--help").output.replace("\n", " ")
    for cls in METHOD_CONFIGS.values():
        for name in cls.field_names():
            assert f"{name}=" in text.replace(" ", "").replace("=", "= ").replace("= ", "="), (cls.name, name)


PREVIOUS_LAYOUT = {"model": "smollm2-135m", "method": "gprune", "sparsity": 0.35, "align": 32, "seed": 0,
                   "device": "auto", "trust_remote_code": False, "calib": ["wiki", "news", "code"], "n_samples": 32,
                   "seq_len": 256, "metric": "wanda-sp", "options": {"lam": 0.5, "calib_cache": "/tmp/c"},
                   "gprune_edge_version": "0.1.0"}


def test_a_recipe_of_the_previous_layout_still_loads(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(PREVIOUS_LAYOUT))
    recipe = PruneRecipe.load(path)
    assert recipe.method == GPruneConfig(metric="wanda-sp", lam=0.5) and recipe.sparsity == 0.35
    flap = PruneRecipe.from_dict({**PREVIOUS_LAYOUT, "method": "flap", "options": {"bias_comp": False}})
    assert flap.method == FlapConfig(bias_comp=False)  # metric was never read by flap: dropped


def test_a_previous_recipe_that_cannot_be_converted_says_how(tmp_path):
    bad = {**PREVIOUS_LAYOUT, "method": "flap", "options": {"modules": 2}}
    with pytest.raises(GPruneError, match='cannot be converted .* write it as "method": {"name": "flap"'):
        PruneRecipe.from_dict(bad)


@pytest.mark.parametrize("field, value, needle", [("sparsity", 1.0, "[0, 1)"), ("seq_len", 0, "seq_len"),
                                                  ("seq_len", 100000, "seq_len"), ("n_samples", 0, "n_samples"),
                                                  ("align", "32", "'align' must be int"), ("bogus", 1, "bogus")])
def test_recipe_fields_are_checked(field, value, needle):
    with pytest.raises(GPruneError, match=needle.replace("[", r"\[").replace(")", r"\)")):
        PruneRecipe.from_dict({"version": 2, field: value})


def test_a_recipe_written_on_a_cuda_machine_repeats_here(tmp_path):
    """Version 3 recipes held the device and trust_remote_code: run settings, dropped with a note,
    so the recipe repeats on a machine without CUDA (and never turns remote code on by itself)."""
    from tiny import tiny_model, tiny_tokenizer

    model_dir = tmp_path / "tiny"
    tiny_model("llama", layers=2).save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    recipe = json.loads(PruneRecipe(model=str(model_dir), sparsity=0.25, align=8, method="magnitude").to_json())
    assert "device" not in recipe and "trust_remote_code" not in recipe
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({**recipe, "version": 3, "device": "cuda", "trust_remote_code": True}))
    result = CliRunner().invoke(cli, ["prune", "--recipe", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "'device' is no longer part of it (a run setting now: --device); dropped 'cuda'" in result.stderr
    assert json.loads((tmp_path / "o" / "recipe.json").read_text()) == recipe
