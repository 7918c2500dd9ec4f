#!/usr/bin/python3
"""Stand-in nvidia-ctk: ``--version``, ``runtime configure --runtime=docker`` (edits daemon.json as the
real one does) and ``cdi generate`` / ``cdi list`` for the declared GPUs."""

import json
import os
import sys

import xpd_standin


def option(argv, name, default):
    for i, arg in enumerate(argv):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return default


def runtime_configure(argv):
    if option(argv, "--runtime", "docker") != "docker":
        xpd_standin.die("stand-in nvidia-ctk configures only docker", 2)
    path = option(argv, "--config", "/etc/docker/daemon.json")
    config = {}
    if os.path.exists(path):
        with open(path) as handle:
            config = json.load(handle)
    else:
        print("INFO[0000] Config file does not exist; using empty config")
    config.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
    if "--set-as-default" in argv:
        config["default-runtime"] = "nvidia"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(config, handle, indent=4)
    print(f"INFO[0000] Wrote updated config to {path}")
    print("INFO[0000] It is recommended that docker daemon be restarted.")


def cdi_names():
    gpus = xpd_standin.gpus("nvidia")
    return [f"nvidia.com/gpu={g['index']}" for g in gpus] + [f"nvidia.com/gpu={g['uuid']}" for g in gpus] + ["nvidia.com/gpu=all"]


def main(argv):
    own = xpd_standin.package("nvidia-container-toolkit-base")
    if "--version" in argv or "-v" in argv:
        print(f"NVIDIA Container Toolkit CLI version {own['upstream']}\ncommit: 0000000")
    elif argv[:2] == ["runtime", "configure"]:
        runtime_configure(argv[2:])
    elif argv[:2] == ["cdi", "list"]:
        names = cdi_names()
        print(f"INFO[0000] Found {len(names)} CDI devices")
        print("\n".join(names))
    elif argv[:2] == ["cdi", "generate"]:
        devices = [{"name": name.split("=", 1)[1]} for name in cdi_names()]
        spec = json.dumps({"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": devices}, indent=2)
        output = option(argv, "--output", None)
        if output:
            with open(output, "w") as handle:
                handle.write(spec + "\n")
        else:
            print(spec)
    else:
        xpd_standin.die(f"stand-in nvidia-ctk does not simulate {' '.join(argv)!r}", 2)


if __name__ == "__main__":
    main(sys.argv[1:])
