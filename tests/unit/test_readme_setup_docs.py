"""The README's setup and troubleshooting sections quote leadflow's own messages and settings:
each quoted piece must still be in the code, so a reworded error or a renamed key fails here
until the README follows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Whitespace collapsed: a quoted message may wrap across lines of the README.
README = " ".join((REPO / "README.md").read_text().split())
SOURCE = "\n".join(p.read_text() for p in sorted((REPO / "include" / "leadflow").rglob("*.py")))
DAGS = "\n".join(p.read_text() for p in sorted((REPO / "dags").glob("*.py")))

# Static pieces of the messages the troubleshooting table and the Salesforce section quote.
MESSAGES = [
    "HubSpot rejected the token (401): check the password of",
    "Salesforce rejected the session (",
    "Salesforce OAuth refused the client of connection",
    "HubSpot refused the call (403): the private app behind",
    "Salesforce refused the call (403",
    "lacks a permission",
    "still failing with",
    "attempts; try the run again later",
    "concurrent request limit still exceeded after",
    "HubSpot's daily API limit is spent (429 DAILY)",
    "HubSpot's daily API allowance is down to",
    "Salesforce daily API allocation is down to",
    "API budget exhausted after",
    "data quality gate failed (",
    "nothing was written. Check the model and the data, then",
    "re-trigger the run with the Param force=true to push anyway.",
    "gave up after repeated rejections",
    "the Salesforce org is not ready for leadflow: ",
    "create it as",
    "webhook alert failed",
    "e-mail alert failed",
]
# Connection `extra` keys and config keys the README tells the reader to set.
SETTINGS = ["rate_limit_per_10s", "daily_reserve", "max_retries", "token_url", "mapping_path",
            "api_version", "query_batch_size", "batch_size", "client_id", "client_secret"]


@pytest.mark.parametrize("message", MESSAGES)
def test_quoted_message_is_in_the_readme_and_in_the_code(message):
    assert message in README, f"README no longer quotes {message!r}: drop it from MESSAGES"
    assert message in SOURCE, f"the code no longer says {message!r}: update the README"


@pytest.mark.parametrize("key", SETTINGS)
def test_setting_named_in_the_readme_is_a_field_of_the_settings_models(key):
    assert f"`{key}`" in README or f"`extra.{key}`" in README
    assert re.search(rf"^\s+{key}: ", SOURCE, re.M), f"no settings field {key!r}"


def test_config_file_keys_named_in_the_readme_exist():
    quality = yaml.safe_load((REPO / "include" / "config" / "quality.yaml").read_text())["quality"]
    for dotted in re.findall(r"`((?:batch|scores)\.[a-z_]+)`", README):
        section, key = dotted.split(".")
        assert key in quality[section], dotted
    push = yaml.safe_load((REPO / "include" / "config" / "leadflow.yaml").read_text())["push"]
    for key in re.findall(r"`push\.([a-z_]+)`", README):
        assert key in push, key


def test_salesforce_fields_and_picklist_values_in_the_readme_are_the_mappings():
    mapping = yaml.safe_load((REPO / "include" / "config" / "crm" / "salesforce.yaml").read_text())
    section = README[README.index("## Connecting a real Salesforce org"):README.index("## What a run does")]
    for spec in mapping["owned_fields"].values():
        assert f"`{spec['name']}`" in section, spec["name"]
    custom_read = {v for v in {**mapping["lead_fields"], **mapping["company_fields"]}.values() if v.endswith("__c")}
    for name in custom_read:
        assert f"`{name}`" in section, name
    for value in [*mapping["lifecycle_stages"], *mapping["rating_by_stage"].values()]:
        assert f"`{value}`" in section, value
    for value, canonical in mapping["lead_statuses"].items():
        if canonical in ("new", "open", "nurture", "unqualified"):  # the statuses leadflow writes
            assert f"`{value}`" in section, value


def test_alert_kinds_in_the_readme_are_the_dags():
    for kind in re.findall(r'_alert\("([^"]+)"\)', DAGS):
        assert f"`{kind}`" in README, kind
