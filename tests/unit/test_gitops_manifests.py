"""Site manifests: the API's schema, errors with file, line and reason, whole-repo checks."""

from __future__ import annotations

import pytest

from controller.gitops.manifests import ManifestErrorList, load_sites

APP = """\
kind: App
spec:
  name: web
  kind: container
  image: busybox
  resources:
    memory_mib: {memory}
"""


def errors(files: dict[str, str]) -> list[tuple[str, int, str]]:
    with pytest.raises(ManifestErrorList) as exc:
        load_sites(files)
    return [(e.file, e.line, e.reason) for e in exc.value.errors]


def test_an_app_in_a_site_folder_gets_the_site_selector():
    sites = load_sites({"sites/qa/web.yaml": APP.format(memory=64)})
    (doc,) = sites.of_kind("App")
    assert (doc.site, doc.spec.name, sites.selectors["qa"]) == ("qa", "web", {"site": "qa"})


def test_a_field_error_names_the_file_and_the_line_of_the_field():
    [(file, line, reason)] = errors({"sites/qa/web.yaml": APP.format(memory=4)})
    assert (file, line) == ("sites/qa/web.yaml", 7)
    assert reason.startswith("spec.resources.memory_mib:")


def test_an_unknown_field_is_refused_on_its_line():
    text = APP.format(memory=64) + "  colour: blue\n"
    [(_, line, reason)] = errors({"sites/qa/web.yaml": text})
    assert line == 8 and "colour" in reason


def test_a_yaml_syntax_error_names_its_line():
    [(_, line, reason)] = errors({"sites/qa/web.yaml": "kind: App\nspec: [unclosed\n"})
    assert line == 3 and "not valid YAML" in reason


def test_an_unknown_kind_is_refused():
    [(_, line, reason)] = errors({"sites/qa/x.yaml": "kind: Pod\nspec: {}\n"})
    assert line == 1 and reason.startswith("kind:")


def test_the_second_document_of_a_file_reports_its_own_lines():
    text = APP.format(memory=64) + "---\nkind: Network\nspec:\n  name: lan\n  subnet: nope\n"
    [(_, line, reason)] = errors({"sites/qa/x.yaml": text})
    assert line == 12 and "subnet" in reason  # the subnet line of the second document


def test_an_app_defined_in_two_sites_is_refused_with_both_places():
    files = {"sites/qa/a.yaml": APP.format(memory=64), "sites/prod/a.yaml": APP.format(memory=64)}
    [(file, _, reason)] = errors(files)
    assert file == "sites/qa/a.yaml" and "sites/prod/a.yaml:1" in reason


def test_files_outside_a_site_folder_are_refused():
    [(file, _, reason)] = errors({"sites/web.yaml": APP.format(memory=64)})
    assert file == "sites/web.yaml" and "sites/<site>/" in reason


def test_every_bad_file_is_reported_not_just_the_first():
    bad = {"sites/qa/a.yaml": APP.format(memory=4), "sites/qa/b.yaml": "kind: Pod\nspec: {}\n"}
    assert [e[0] for e in errors(bad)] == ["sites/qa/a.yaml", "sites/qa/b.yaml"]


def test_a_site_document_sets_the_selector_and_its_nodes():
    text = "kind: Site\nspec:\n  selector: {env: qa}\n  nodes: [n-1]\n"
    sites = load_sites({"sites/qa/site.yaml": text})
    assert sites.selectors == {"qa": {"env": "qa"}}
    assert sites.of_kind("Site")[0].spec.nodes == ["n-1"]


def test_a_rollout_document_must_name_an_app_of_the_repository():
    text = "kind: Rollout\nspec:\n  app: ghost\n  rings: [{}]\n"
    [(_, line, reason)] = errors({"sites/qa/r.yaml": text})
    assert line == 3 and reason == "no App 'ghost' in the repository"
