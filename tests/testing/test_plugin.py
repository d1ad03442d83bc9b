"""The pytest plugin, run inside pytester: the fixture, the markers, YAML files, coverage."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

POLICY = """\
types:
  user: {}
  document:
    relations: {owner: [user]}
    permissions: {read: owner, write: owner}
"""
DATA = """\
relationships: [document:1#owner@user:alice]
"""
CASES = """\
policy: policy.yaml
data: data.yaml
cases:
  - name: alice reads
    principal: user:alice
    action: read
    resource: document:1
    expect: allow
  - name: bob reads
    principal: user:bob
    action: read
    resource: document:1
    expect: deny
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".yaml", policy=POLICY, data=DATA)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # only this plugin: the others installed here (langsmith's, anyio's...) cost a second a run
    return pytester.runpytest_inprocess("--disable-plugin-autoload", "-p",
                                        "agentauthz.testing.pytest_plugin", "-p",
                                        "no:cacheprovider", *args)


def run_installed(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # as users get it, through the pytest11 entry point (and pytest-asyncio, which warns about
    # its own unset option in any project that lacks it)
    return pytester.runpytest_inprocess("-p", "no:asyncio", "-p", "no:cacheprovider", *args)


def test_the_fixture_takes_its_policy_from_the_marker(project: pytest.Pytester) -> None:
    project.makepyfile(textwrap.dedent("""
        import pytest
        from agentauthz.testing import RecordingAuthorizer

        pytestmark = pytest.mark.authz_policy("policy.yaml", data="data.yaml")

        def code_under_test(authz, user):
            return authz.check(user, "read", "document:1").allowed

        def test_allowed(authz):
            assert isinstance(authz, RecordingAuthorizer)
            authz.assert_allowed("user:alice", "read", "document:1")
            authz.assert_denied("user:bob", "read", "document:1")
            assert code_under_test(authz, "user:bob") is False
            assert [(d.principal, d.action, d.allowed) for d in authz.decisions] == [
                ("user:bob", "read", False)]

        def test_fresh_for_each_test(authz):
            assert authz.decisions == []
            authz.add("document:2#owner@user:bob")

        def test_nothing_leaks_from_the_test_before(authz):
            authz.assert_denied("user:bob", "read", "document:2")

        @pytest.mark.authz_policy("types: {user: {}, doc: {}}\\n")
        def test_the_closest_marker_wins_and_may_be_inline(authz):
            assert set(authz.policy.types) == {"user", "doc"}
    """))
    run(project, "--strict-markers").assert_outcomes(passed=4)


def test_a_failed_assertion_prints_the_explanation(project: pytest.Pytester) -> None:
    project.makepyfile(textwrap.dedent("""
        import pytest

        @pytest.mark.authz_policy("policy.yaml", data="data.yaml")
        def test_bob(authz):
            authz.assert_allowed("user:bob", "write", "document:1")
    """))
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E *AssertionError: expected allow, got deny: user:bob write document:1",
        "E *  request:  user:bob write document:1",
        "E *    - [[]default_deny[]] no relation path or permit rule grants 'write' on document",
        "E *    ✘ DENY: user:bob write document:1",
        "E *        ✘ document.write on document:1 = owner",
        "E *            ✘ relation document:1#owner — direct subjects: user:alice",
    ])
    result.stdout.no_fnmatch_line("*agentauthz/testing/__init__.py*")  # the helper's frame is hidden


def test_the_ini_options_configure_every_test(project: pytest.Pytester) -> None:
    project.mkdir("config")
    (project.path / "policy.yaml").rename(project.path / "config" / "policy.yaml")
    project.makeini("[pytest]\nauthz_policy = config/policy.yaml\nauthz_data = data.yaml\n")
    project.mkdir("sub")
    (project.path / "sub" / "test_ini.py").write_text(textwrap.dedent("""
        def test_ini(authz):
            authz.assert_allowed("user:alice", "read", "document:1")
    """))
    run(project, "--strict-config").assert_outcomes(passed=1)


def test_without_a_policy_the_fixture_says_how_to_give_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent("""
        import pytest

        def test_none(authz):
            pass

        @pytest.mark.authz_policy("policy.yaml", "data.yaml")
        def test_two_policies(authz):
            pass

        @pytest.mark.authz_policy("missing.yaml")
        def test_missing(authz):
            pass
    """))
    result = run(pytester)
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines([
        "*the authz fixture needs a policy: mark the test with @pytest.mark.authz_policy("
        "'policy.yaml'), or set authz_policy (and authz_data) in the pytest configuration",
        "*@pytest.mark.authz_policy takes one policy and the keywords data= and agents= "
        "(got 2 arguments)",
        "*the authz fixture could not be built: invalid policy: 1 problem",
        "*missing.yaml: file not found*",
    ])


FACTORIES = """
from agentauthz.testing import local_backend

def first(policy, data):
    backend = local_backend(policy, data)
    backend.name = "first"
    return backend

def second(policy, data):
    backend = local_backend(policy, data)
    backend.name = "second"
    return backend
"""


def test_authz_backends_runs_a_test_once_per_backend(project: pytest.Pytester) -> None:
    project.makepyfile(factories=FACTORIES)
    project.makeini("[pytest]\nauthz_policy = policy.yaml\nauthz_data = data.yaml\n"
                    "authz_backends =\n    one = factories:first\n    factories:second\n")
    project.makepyfile(test_backends=textwrap.dedent("""
        import pytest

        @pytest.mark.authz_backends
        def test_each(authz, authz_backend):
            assert authz.backend.name == {"one": "first", "second": "second"}[authz_backend]
            authz.assert_allowed("user:alice", "read", "document:1")

        @pytest.mark.authz_backends("second")
        def test_named(authz):
            assert authz.backend.name == "second"

        def test_unmarked_tests_use_the_first(authz, authz_backend):
            assert (authz_backend, authz.backend.name) == ("one", "first")
    """))
    project.syspathinsert()
    result = run(project, "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_each[[]one[]] PASSED*", "*test_each[[]second[]] PASSED*",
                                 "*test_named[[]second[]] PASSED*"])


def test_authz_backends_by_default_is_the_local_evaluator(project: pytest.Pytester) -> None:
    project.makepyfile(textwrap.dedent("""
        import pytest

        @pytest.mark.authz_backends
        @pytest.mark.authz_policy("policy.yaml", data="data.yaml")
        def test_each(authz):
            assert authz.backend.name == "local"
    """))
    result = run(project, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_each[[]local[]] PASSED*"])


def test_authz_backends_mistakes_are_usage_errors(project: pytest.Pytester) -> None:
    project.makepyfile(test_a=textwrap.dedent("""
        import pytest

        @pytest.mark.authz_backends
        def test_no_fixture():
            pass
    """))
    result = run(project)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*test_a.py::test_no_fixture: @pytest.mark.authz_backends runs a "
                                 "test once per backend of the authz fixture, but the test does not "
                                 "use the authz fixture"])
    project.makepyfile(test_a=textwrap.dedent("""
        import pytest

        @pytest.mark.authz_backends("opa")
        def test_unknown(authz):
            pass
    """))
    run(project).stdout.fnmatch_lines(["*@pytest.mark.authz_backends names 'opa', not in "
                                       "authz_backends (local)"])
    project.makeini("[pytest]\nauthz_backends = not a factory\n")
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*authz_backends: cannot read 'not a factory'; write 'name = "
                                 "module:callable'*"])


def test_a_backend_that_cannot_be_imported(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nauthz_policy = policy.yaml\nauthz_backends = nowhere:factory\n")
    project.makepyfile("def test_x(authz):\n    pass\n")
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*authz_backends: backend 'factory' = 'nowhere:factory' cannot be "
                                 "imported: No module named 'nowhere'"])


def test_policy_test_files_are_collected_one_item_per_case(project: pytest.Pytester) -> None:
    project.makefile(".authz.yaml", cases=CASES)
    result = run(project, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["cases.authz.yaml::alice reads PASSED*",
                                 "cases.authz.yaml::bob reads PASSED*"])


def test_a_failing_case_shows_the_case_the_decision_and_the_explanation(
        project: pytest.Pytester) -> None:
    project.makefile(".authz.yaml", cases=CASES.replace("expect: deny", "expect: allow"))
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*_ authz case: bob reads _*",
        "FAIL cases.authz.yaml:9: bob reads — expected allow, got deny",
        "  request:  user:bob read document:1",
        "  expected: allow",
        "  got:      deny",
        "    - [[]default_deny[]] no relation path or permit rule grants 'read' on document",
        "  explanation:",
        "    ✘ DENY: user:bob read document:1",
        "        ✘ document.read on document:1 = owner",
        "            ✘ relation document:1#owner — direct subjects: user:alice",
        "FAILED cases.authz.yaml::bob reads - FAIL cases.authz.yaml:9: bob reads*",
    ])


def test_an_invalid_policy_test_file_is_a_collection_error(project: pytest.Pytester) -> None:
    project.makefile(".authz.yml", broken=CASES.replace("expect: deny", "expect: nope"))
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting broken.authz.yml*",
                                 "invalid policy test file: 1 problem",
                                 "  broken.authz.yml:13:13: cases[1].expect: expect must be 'allow' "
                                 "or 'deny', got 'nope'"])


def test_authz_coverage_reports_what_no_case_exercised(project: pytest.Pytester) -> None:
    project.makefile(".authz.yaml", cases=CASES)
    result = run(project, "--authz-coverage")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*agentauthz policy coverage*",
        "coverage of policy.yaml (sha256:*), 2 cases:",
        "  rules that decided a case: 0 of 0",
        "  relations and permissions evaluated: 2 of 3",
        "  relations and permissions never evaluated:",
        "    document.write (permission)",
    ])
    run(project, "--authz-coverage", "-k", "nothing").stdout.fnmatch_lines(
        ["no *.authz.yaml case ran"])


def test_the_plugin_is_installed_and_can_be_turned_off(project: pytest.Pytester) -> None:
    project.makefile(".authz.yaml", cases=CASES)
    project.makepyfile("def test_x():\n    pass\n")
    run_installed(project, "-v").stdout.fnmatch_lines(["cases.authz.yaml::alice reads PASSED*"])
    result = run_installed(project, "-p", "no:agentauthz")
    result.assert_outcomes(passed=1)


def test_markers_and_options_are_registered(pytester: pytest.Pytester) -> None:
    result = run_installed(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.authz_policy(policy, data=None, agents=None):*",
                                 "@pytest.mark.authz_backends(*names):*"])
    run_installed(pytester, "--help").stdout.fnmatch_lines(["agentauthz:", "*--authz-coverage*",
                                                  "*authz_policy (string):*",
                                                  "*authz_backends (linelist):*"])
