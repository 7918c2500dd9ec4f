#!/bin/sh
# Stand-in update-initramfs: the "image" lists the modprobe configuration it would carry, so a test can
# check that a blacklist (nouveau) made it into the initramfs.
set -e
kernel=$(uname -r)
echo "update-initramfs: Generating /boot/initrd.img-$kernel"
mkdir -p /boot
cat /etc/modprobe.d/*.conf > "/boot/initrd.img-$kernel" 2>/dev/null || : > "/boot/initrd.img-$kernel"
