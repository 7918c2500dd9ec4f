#!/bin/sh
# UCX into /opt/ucx (verbs and rdmacm for RDMA, plus the GPU memory support the engine image names),
# then NIXL built against that UCX; fails the build, not the first request, when UCX does not run.
# Both engine images run it, so their KV transport differs only in the GPU flag.
#   ucx-nixl.sh UCX_VERSION NIXL_VERSION UCX_GPU_FLAG     e.g. --with-cuda=/usr/local/cuda
set -eu
ucx_version=$1
nixl_version=$2
gpu_flag=$3

git clone --depth 1 --branch "v${ucx_version}" https://github.com/openucx/ucx /tmp/ucx
cd /tmp/ucx
./autogen.sh
./contrib/configure-release --prefix=/opt/ucx "${gpu_flag}" --with-verbs --with-rdmacm \
  --enable-mt --without-go --without-java
make -j"$(nproc)" install
cd /
rm -rf /tmp/ucx

git clone --depth 1 --branch "${nixl_version}" https://github.com/ai-dynamo/nixl /tmp/nixl
python3 -m pip install /tmp/nixl -Csetup-args=-Ducx_path=/opt/ucx
rm -rf /tmp/nixl

/opt/ucx/bin/ucx_info -v
