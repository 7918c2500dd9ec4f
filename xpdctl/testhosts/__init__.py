"""Test hosts: a fleet of Debian hosts on this machine, reached over real SSH, with simulated GPUs.

No GPU, RDMA NIC, Docker engine or systemd PID 1 exists on the machines xpdctl is tested on, so a test
host is built from what does (REFERENCE section 8): a network namespace joined to a bridge, an overlay
root over one cached debootstrapped Debian, a PID namespace whose PID 1 is Debian's daemonless
``systemctl`` (it "boots" the enabled units and reaps orphans), and ``sshd``.

Hardware is simulated at the lowest layer that software looks at: a fake ``/sys/bus/pci/devices`` tree
(bind-mounted inside the host), and a local apt repository of stand-in packages with the real package
names (``nvidia-driver-570-server-open``, ``amdgpu-dkms``, ``rdma-core``, ...) whose tools
(``nvidia-smi``, ``amd-smi``, ``ibv_devinfo``, ...) print the real formats for the GPUs and NICs declared
in ``/etc/xpd-testhost/hardware.json``. Provisioning code runs unchanged against them.

Modules: :mod:`.layout` (where things live), :mod:`.models` (fleet records), :mod:`.rootfs` (the cached
Debian root), :mod:`.hardware` (declared GPUs/NICs -> hardware.json and sysfs), :mod:`.aptrepo` and
:mod:`.aptserve` (stand-in packages, served over HTTP on the bridge), :mod:`.network` (bridge, netns,
veth), :mod:`.host` (boot and stop one host), :mod:`.inventory` (an xpdctl inventory for a fleet),
:mod:`.fleet` (create, destroy, list, faults).
"""
