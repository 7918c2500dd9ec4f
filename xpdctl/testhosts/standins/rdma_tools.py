#!/usr/bin/python3
"""Stand-in RDMA tools, chosen by the name they are run as: ibv_devinfo, ibv_devices, ibstat, ofed_info.

Devices and port states come from the NICs in /etc/xpd-testhost/hardware.json; the layouts are the
tools' documented ones (no RDMA NIC exists where test hosts run).
"""

import os
import sys

import xpd_standin

PORT_STATE = {"ACTIVE": "PORT_ACTIVE (4)", "DOWN": "PORT_DOWN (1)"}


def nics(argv):
    found = xpd_standin.hardware()["nics"]
    for flag in ("-d", "--ib-dev"):
        if flag in argv:
            wanted = argv[argv.index(flag) + 1]
            found = [nic for nic in found if nic["name"] == wanted]
            if not found:
                xpd_standin.die(f"IB device '{wanted}' wasn't found", 255)
    return found


def ibv_devinfo(argv):
    devices = nics(argv)
    if not devices:
        xpd_standin.die("No IB devices found", 255)
    if "-l" in argv or "--list" in argv:
        print(f"{len(devices)} HCA{'s' if len(devices) != 1 else ''} found:")
        for nic in devices:
            print(f"\t{nic['name']}")
        return
    blocks = []
    for nic in devices:
        active = nic["port_state"] == "ACTIVE"
        blocks.append(
            "\n".join([
                f"hca_id:\t{nic['name']}",
                "\ttransport:\t\t\tInfiniBand (0)",
                f"\tfw_ver:\t\t\t\t{nic['fw_ver']}",
                f"\tnode_guid:\t\t\t{nic['node_guid']}",
                "\tvendor_id:\t\t\t0x02c9",
                f"\tvendor_part_id:\t\t\t{nic['vendor_part_id']}",
                "\tphys_port_cnt:\t\t\t1",
                "\t\tport:\t1",
                f"\t\t\tstate:\t\t\t{PORT_STATE[nic['port_state']]}",
                "\t\t\tmax_mtu:\t\t4096 (5)",
                f"\t\t\tactive_mtu:\t\t{'4096 (5)' if active else '1024 (3)'}",
                f"\t\t\tlink_layer:\t\t{nic['link_layer']}",
            ])  # fmt: skip
        )
    print("\n\n".join(blocks))


def ibv_devices(argv):
    print("    device          \t   node GUID")
    print("    ------          \t----------------")
    for nic in nics(argv):
        print(f"    {nic['name']:<16}\t{nic['node_guid'].replace(':', '')}")


def ibstat(argv):
    for nic in nics(argv):
        state = "Active" if nic["port_state"] == "ACTIVE" else "Down"
        print(f"CA '{nic['name']}'\n\tCA type: MT{nic['vendor_part_id']}\n\tNumber of ports: 1")
        print(f"\tFirmware version: {nic['fw_ver']}\n\tNode GUID: 0x{nic['node_guid'].replace(':', '')}")
        print(f"\tPort 1:\n\t\tState: {state}\n\t\tRate: {nic['rate'].split()[0]}\n\t\tLink layer: {nic['link_layer']}")


def ofed_info(argv):
    own = xpd_standin.package("doca-ofed") or xpd_standin.die("ofed_info: no OFED installed", 1)
    release = f"OFED-internal-{own['upstream']}"
    print(f"{release}:" if "-s" in argv else f"{release}:\n\nInstalled Packages:\n-------------------\ndoca-ofed")


TOOLS = {"ibv_devinfo": ibv_devinfo, "ibv_devices": ibv_devices, "ibstat": ibstat, "ofed_info": ofed_info}

if __name__ == "__main__":
    TOOLS[os.path.basename(sys.argv[0])](sys.argv[1:])
