from xpdctl.diff import diff_trees, mask_secrets
from xpdctl.render import RenderedFile


def test_added_removed_changed_and_mode_changes():
    old = {
        "a": RenderedFile("x\n", 0o644),
        "b": RenderedFile("gone\n", 0o644),
        "c": RenderedFile("one\ntwo\n", 0o644),
        "d": RenderedFile("same\n", 0o644),
        "e": RenderedFile("K=v\n", 0o644),
    }
    new = {
        "a": RenderedFile("x\n", 0o644),
        "c": RenderedFile("one\nthree\n", 0o644),
        "d": RenderedFile("same\n", 0o600),
        "e": RenderedFile("K=v\n", 0o600),
        "f": RenderedFile("new\n", 0o644),
    }
    changes = {c.path: c for c in diff_trees(old, new, set())}
    assert {p: c.status for p, c in changes.items()} == {
        "b": "removed", "c": "changed", "d": "mode", "e": "mode", "f": "added"
    }
    assert changes["c"].diff == "--- a/c\n+++ b/c\n@@ -1,2 +1,2 @@\n one\n-two\n+three\n"
    assert changes["b"].diff.startswith("--- a/b\n+++ /dev/null\n")
    assert changes["d"].diff == "mode d: 0644 -> 0600\n"


def test_secrets_are_masked_but_changes_still_show():
    old = {"x.env": RenderedFile("HF_TOKEN=old\nA=1\n", 0o600)}
    new = {"x.env": RenderedFile("HF_TOKEN=new\nA=1\n", 0o600)}
    (change,) = diff_trees(old, new, {"HF_TOKEN"})
    assert "old" not in change.diff and "new" not in change.diff
    assert change.diff.count("HF_TOKEN=<secret sha256:") == 2
    assert mask_secrets("A=1\nHF_TOKEN=x", {"HF_TOKEN"}).startswith("A=1\nHF_TOKEN=<secret sha256:2d711642>")
