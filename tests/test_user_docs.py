"""The user docs (docs/README.md and the pages it starts from) stay true to the code: every page is
indexed, every link and anchor resolves, every status is explained, every config key they name
exists, every config snippet validates, every command they show exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_judge.config import ConfigError, load_config_text, validate_config
from otel_judge.logs import EVENTS
from otel_judge.model import EvaluationStatus

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
INDEX = DOCS / "README.md"
# The pages written for users from the index down (the others are checked by their own tests).
USER_PAGES = ["getting-started.md", "concepts.md", "cost-control.md", "judge-trust.md", "troubleshooting.md"]
LINKED = [
    INDEX,
    *(DOCS / p for p in USER_PAGES),
    ROOT / "examples" / "README.md",
    ROOT / "examples" / "litellm_proxy" / "README.md",
]
SECTIONS = ("receivers", "exporters", "sampling", "judge", "evaluators", "reader", "outputs", "service")
SECTIONS += ("storage", "store", "quality")
CLI_COMMANDS = {"serve", "validate", "inspect", "replay", "report", "calibrate"}


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_index_links_every_page() -> None:
    """docs/README.md links every Markdown page of docs/."""
    linked = {link.split("#")[0] for link in links(INDEX)}

    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}

    assert pages - linked == set()


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(path: Path) -> None:
    """Every relative link leads to a file or folder of the repository, and every #anchor into a
    Markdown file names one of its headings."""
    broken = []
    for link in links(path):
        if "://" in link or link.startswith("mailto:"):
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target) if target else path
        missing_anchor = bool(anchor) and file.suffix == ".md" and file.exists() and anchor not in anchors(file)
        if not file.exists() or missing_anchor:
            broken.append(link)

    assert broken == []


@pytest.mark.parametrize("status", [s.value for s in EvaluationStatus])
def test_every_status_is_explained(status: str) -> None:
    """Each otel_judge.evaluation.status value has a row in concepts.md's table, and each one that
    means "no score" a section of its own in troubleshooting.md."""
    concepts = (DOCS / "concepts.md").read_text(encoding="utf-8")
    troubleshooting = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")

    assert re.search(rf"^\| `{status}` \|", concepts, re.MULTILINE)
    if status != "evaluated":
        assert f"### `{status}`" in troubleshooting


def reference_keys() -> set[str]:
    reference = (DOCS / "configuration.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([^`]+)` \|", reference, re.MULTILINE))


def test_config_keys_named_exist() -> None:
    """Every `section.key...` the pages name is a key (or the start of a key) of the configuration
    reference: no invented options. (Log event names such as `judge.circuit_open` are not keys.)"""
    keys = reference_keys()
    named: dict[str, str] = {}
    for page in USER_PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        for token in re.findall(r"`([a-z_]+(?:\[\d*\])?(?:\.[a-z_]+(?:\[\d*\])?)+)(?::\s[^`]*)?`", text):
            if token.split(".")[0].split("[")[0] in SECTIONS and token not in EVENTS:
                named[token] = page

    def known(token: str) -> bool:
        token = re.sub(r"\[\d*\]", "[]", token)
        return token in keys or any(k.startswith(token + ".") for k in keys)

    assert sorted(f"{page}: {t}" for t, page in named.items() if not known(t)) == []
    assert len(named) > 20, "the pages name few config keys: is the pattern still right?"


def yaml_blocks(page: str) -> list[Any]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]


@pytest.mark.parametrize(("page", "index"), [(p, i) for p in USER_PAGES for i in range(len(yaml_blocks(p)))], ids=str)
def test_config_snippets_validate(page: str, index: int) -> None:
    """Each YAML snippet is a valid config, or a valid part of one (completed with a debug exporter)."""
    block = yaml_blocks(page)[index]
    assert isinstance(block, dict) and set(block) <= set(SECTIONS), block

    try:
        validate_config({"exporters": {"debug": {}}, **block})
    except ConfigError as exc:
        pytest.fail(f"{page} YAML block {index}: {exc.problems}")


@pytest.mark.parametrize("page", USER_PAGES)
def test_commands_shown_exist(page: str) -> None:
    """Every `otel-judge COMMAND` a page shows is a command of the CLI."""
    text = (DOCS / page).read_text(encoding="utf-8")

    shell = "\n".join(re.findall(r"```sh\n(.*?)```", text, re.DOTALL))
    used = set(re.findall(r"`otel-judge ([a-z]+)", text)) | set(re.findall(r"otel-judge ([a-z]+)", shell))

    assert used - CLI_COMMANDS == set()


# (config, the message as troubleshooting.md quotes it): the quoted messages are what validate says.
CONFIG_ERRORS = [
    pytest.param("judge: {model: openai/gpt-4o-mini}", "exporters: required", id="no-exporter"),
    pytest.param("exporters: {debug: {}}\njudge: {timout: 10s}", "judge.timout: unknown key", id="unknown-key"),
    pytest.param(
        "exporters: {debug: {}}\njudge: {max_hold: 5 minutes}",
        "'5 minutes' is not a duration (write it like 500ms, 30s, 5m or 1h30m)",
        id="duration",
    ),
    pytest.param(  # a warning, listed among the problems when there are others
        "exporters: {otlp: {endpoint: '${env:BACKEND}'}}\njudge: {timout: 1s}",
        "environment variable BACKEND is not set",
        id="env-unset",
    ),
    pytest.param(
        "exporters: {otlp: {endpoint: 'http://127.0.0.1:4317'}}",
        "exporters.otlp.endpoint 'http://127.0.0.1:4317' is otel-judge's own receiver (127.0.0.1:4317): "
        "it would export to itself",
        id="itself",
    ),
    pytest.param(
        "exporters: {debug: {}}\nevaluators: [{name: Quality, type: score}]",
        "evaluators[0].name: use lower-case letters, digits and _ (it becomes part of attribute names)",
        id="evaluator-name",
    ),
    pytest.param(
        "exporters: {debug: {}}\nquality: {slices: {window: span.x}}",
        "quality.slices: slice name 'window' is a parameter of the quality API; choose another",
        id="slice-name",
    ),
    pytest.param(
        "exporters: {debug: {}}\nstore: {url: 'mysql://x'}",
        "store.url: 'mysql' is not a supported store URL",
        id="store",
    ),
    pytest.param(
        "exporters: {debug: {}}\nsampling: {policies: [{name: s, type: probabilistic, "
        "probabilistic: {sampling_percentage: 150}}]}",
        "sampling.policies[0].probabilistic.sampling_percentage: Input should be less than or equal to 100",
        id="percentage",
    ),
]


@pytest.mark.parametrize(("text", "message"), CONFIG_ERRORS)
def test_quoted_config_errors_are_what_validate_says(text: str, message: str) -> None:
    """troubleshooting.md quotes each message as otel-judge's validation produces it."""
    doc = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config_text(text, {})

    assert any(message in problem for problem in caught.value.problems), caught.value.problems
    assert message in doc
