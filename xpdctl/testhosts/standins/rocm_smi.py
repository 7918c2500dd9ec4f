#!/usr/bin/python3
"""Stand-in rocm-smi: ``--showproductname [--json]`` and the default summary, for the declared AMD GPUs."""

import json
import sys

import xpd_standin


def main(argv):
    gpus = xpd_standin.gpus("amd")
    if xpd_standin.loaded_module("amdgpu") is None or not gpus:
        xpd_standin.die("ERROR: No AMD GPUs specified; is the amdgpu driver loaded? (modprobe amdgpu)", 1)
    if "--showproductname" in argv:
        cards = {
            f"card{gpu['index']}": {
                "Card Series": gpu["product_name"] + " OAM",
                "Card Model": gpu["pci_device"],
                "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
                "Subsystem ID": gpu["pci_device"],
                "Device Rev": "0x00",
                "GFX Version": gpu["architecture"],
            }
            for gpu in gpus
        }
        if "--json" in argv:
            print(json.dumps(cards))
        else:
            for card, fields in cards.items():
                for key, value in fields.items():
                    print(f"GPU[{card[4:]}]\t\t: {key}: \t{value}")
        return
    print("========================================= ROCm System Management Interface =========================================")
    print("Device  Node  IDs              Temp        Power     Partitions          SCLK    MCLK    Fan  Perf  PwrCap  VRAM%  GPU%")
    for gpu in gpus:
        print(f"{gpu['index']:<8}{gpu['index'] + 2:<6}{gpu['pci_device']}, {gpu['index']:<7}{40 + gpu['index'] % 5:.1f}°C      "
              f"{120 + 3 * gpu['index']:.1f}W    SPX, NPS1           132Mhz  900Mhz  0%   auto  {gpu['power_limit_w']:.1f}W  0%     0%")
    print("=============================================== End of ROCm SMI Log ================================================")


if __name__ == "__main__":
    main(sys.argv[1:])
