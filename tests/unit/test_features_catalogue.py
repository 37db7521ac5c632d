"""The README's feature catalogue is generated from code and current."""

from pathlib import Path

from typer.testing import CliRunner

from features.catalogue import readme_section, render_catalogue, write_readme_section
from features.pipeline import FEATURE_SETS, FEATURES
from kernels import CATALOGUE
from ray_apps.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_catalogue_equals_generated_text():
    assert readme_section(README.read_text()) == render_catalogue(), \
        "README catalogue is stale: run `stockray catalogue --write-readme`"


def test_every_feature_and_kernel_is_listed():
    text = render_catalogue()
    for f in FEATURES:
        assert f"`{f.name}`" in text
    for k in CATALOGUE:
        assert f"`{k['name']}`" in text
    kernels = {k["name"] for k in CATALOGUE}
    assert {f.kernel for f in FEATURES if f.kernel} <= kernels
    assert all(set(names) <= {f.name for f in FEATURES} for names in FEATURE_SETS.values())


def test_write_readme_regenerates_the_section(tmp_path):
    from features.catalogue import BEGIN, END

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    res = CliRunner().invoke(app, ["catalogue", "--write-readme", "--readme", str(readme)])
    assert res.exit_code == 0, res.output
    assert readme_section(readme.read_text()) == render_catalogue()
    assert readme.read_text().endswith("\n\nafter\n")
    assert write_readme_section(readme) is False  # idempotent
