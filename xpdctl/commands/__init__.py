"""One module per top-level command, each exposing ``command`` (see xpdctl.cli)."""
