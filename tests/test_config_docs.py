"""The shipped configs validate, and every config key is documented in config/README.md."""

import tomllib
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def schema_keys(node, prefix=""):
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        yield path
        if sub.get("type") == "object":
            yield from schema_keys(sub, path + ".")
        if sub.get("type") == "array" and sub.get("items", {}).get("type") == "object":
            yield from schema_keys(sub["items"], path + "[].")


def test_every_config_key_is_documented():
    schema = yaml.safe_load(SCHEMA.read_text())
    doc = (ROOT / "config" / "README.md").read_text()
    missing = [k for k in schema_keys(schema) if f"`{k}" not in doc]
    assert not missing, f"undocumented config keys: {missing}"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_shipped_configs_validate(name):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate(config, str(SCHEMA))


def test_conda_environment_mirrors_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(d for d in pip if not d.startswith("-e")) == sorted(deps)


def test_schema_lists_the_registered_strategies_and_the_docs_describe_each():
    from adaspx.acquisition import STRATEGIES

    schema = yaml.safe_load(SCHEMA.read_text())
    enum = schema["properties"]["experiments"]["items"]["properties"]["acquisition"]["enum"]
    assert enum == list(STRATEGIES)
    row = next(
        line
        for line in (ROOT / "config" / "README.md").read_text().splitlines()
        if "`experiments[].acquisition`" in line
    )
    assert [name for name in STRATEGIES if f"`{name}`" not in row] == []
