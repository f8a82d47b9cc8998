#!/usr/bin/env bash
# The trainer's CUDA build without a GPU or a system CUDA install: NVIDIA's CUDA 13.0 toolkit
# from PyPI wheels, unpacked under target/cuda/.
#
#   scripts/cuda.sh check    type-check hrm-trainer with `--features cuda` (what CI runs): the Rust
#                            code behind the feature against candle's and cudarc's CUDA API, with
#                            a stand-in nvcc so that candle's own kernels are not compiled (no
#                            download; about a minute)
#   scripts/cuda.sh check-kernels
#                            the same with NVIDIA's nvcc, compiling candle's kernels too (about
#                            9 minutes on 2 cores, 104 MB download)
#   scripts/cuda.sh build    release `hrm` with CUDA (target/cuda-release/release/hrm; 675 MB of
#                            wheels, about 7 minutes); runs on a machine with the NVIDIA driver
#   scripts/cuda.sh env      print the environment lines to use the toolkit by hand
#
# CUDA 13.0.x is pinned: newer nvcc emits PTX that driver 580 may reject.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/target/cuda"
wheels="$root/wheels"
toolkit="$root/toolkit"
cuda_home="$toolkit/nvidia/cu13"
check_wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
link_wheels=(nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88)

fetch() {
  command -v unzip >/dev/null || { echo "cuda.sh: needs unzip (apt-get install unzip)" >&2; exit 1; }
  python3 -m pip --version >/dev/null || { echo "cuda.sh: needs pip (apt-get install python3-pip)" >&2; exit 1; }
  mkdir -p "$wheels" "$toolkit"
  local missing=()
  for w in "$@"; do
    local name="${w%%==*}" version="${w##*==}"
    ls "$wheels"/"${name//-/_}"-"$version"-*.whl >/dev/null 2>&1 || missing+=("$w")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --python-version 3.11 \
      -d "$wheels" "${missing[@]}"
  fi
  for w in "$wheels"/*.whl; do
    local stamp="$toolkit/.$(basename "$w").unpacked"
    [ -f "$stamp" ] || { unzip -qo "$w" -d "$toolkit" && touch "$stamp"; }
  done
}

environment() {
  export CUDA_HOME="$cuda_home" CUDA_PATH="$cuda_home" PATH="$cuda_home/bin:$PATH"
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"   # 90: H100/H200; 80: A100; 89: L4/RTX 40
  export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-2}"
  export LIBRARY_PATH="$cuda_home/lib:${LIBRARY_PATH:-}"
}

# The wheels ship versioned libraries only and no driver: add the unversioned names the linker
# looks for, and a stub libcuda.so.1 defining the driver entry points the binary references (the
# real driver provides them at run time).
link_stubs() {
  local lib="$cuda_home/lib"
  for pair in cublas:13 cublasLt:13 cudart:13 nvrtc:13 curand:10; do
    local name="${pair%%:*}" major="${pair##*:}"
    [ -e "$lib/lib$name.so.$major" ] && ln -sf "lib$name.so.$major" "$lib/lib$name.so"
  done
  if [ ! -e "$lib/libcuda.so" ]; then
    # Entry points named in cudarc's driver bindings, as dummies.
    local src registry
    src="$root/libcuda-stub.c"
    registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-* 2>/dev/null | sort | tail -1)
    grep -rhoE '\bcu[A-Z][A-Za-z0-9_]*(_v[0-9]+)?\b' "$registry/src/driver/sys" 2>/dev/null | sort -u \
      | awk '{ printf "void %s(void) {}\n", $1 }' > "$src"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$lib/libcuda.so.1" "$src"
    ln -sf libcuda.so.1 "$lib/libcuda.so"
  fi
}

# A stand-in for nvcc: it reports CUDA 13.0 and writes empty outputs where nvcc would write PTX,
# objects or a static library. candle-kernels' build script then embeds empty PTX, which is all
# `cargo check` needs to type-check the crates above it; nothing built this way is ever linked.
stand_in_nvcc() {
  local bin="$root/stand-in/bin"
  mkdir -p "$bin"
  cat > "$bin/nvcc" <<'NVCC'
#!/usr/bin/env bash
# Stand-in nvcc of scripts/cuda.sh check: no kernel is compiled.
out="" dir="" lib=0 ptx=0 sources=()
while [ $# -gt 0 ]; do
  case "$1" in
    --version)
      # nvcc 13.0.88's banner, line for line (cudarc's build script reads the fourth line).
      printf '%s\n' 'nvcc: NVIDIA (R) Cuda compiler driver' 'Copyright (c) 2005-2025 NVIDIA Corporation' \
        'Built on stand-in' 'Cuda compilation tools, release 13.0, V13.0.88' 'Build cuda_13.0.r13.0/compiler.stand-in'
      exit 0 ;;
    --list-gpu-code) printf 'sm_75\nsm_80\nsm_86\nsm_89\nsm_90\nsm_100\nsm_120\n'; exit 0 ;;
    -o) out="$2"; shift ;;
    --output-directory|-odir) dir="$2"; shift ;;
    --lib|-lib) lib=1 ;;
    --ptx|-ptx) ptx=1 ;;
    *.cu) sources+=("$1") ;;
  esac
  shift
done
if [ $lib -eq 1 ]; then printf '!<arch>\n' > "$out"; exit 0; fi
if [ -n "$out" ]; then : > "$out"; exit 0; fi
if [ $ptx -eq 1 ]; then
  for s in "${sources[@]}"; do n="$(basename "$s")"; : > "${dir:-.}/${n%.cu}.ptx"; done
fi
NVCC
  chmod +x "$bin/nvcc"
  export CUDA_HOME="$root/stand-in" CUDA_PATH="$root/stand-in" NVCC="$bin/nvcc" PATH="$bin:$PATH"
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
}

case "${1:-}" in
  check)
    stand_in_nvcc
    # In the main target directory, so that what the feature does not touch is reused from
    # clippy's run in .ci/run. The empty kernels stay in this directory: the real builds below
    # have their own (candle-kernels' build script does not rerun when nvcc changes).
    cargo check --locked -p hrm-trainer --features cuda
    ;;
  check-kernels)
    fetch "${check_wheels[@]}"
    environment
    cargo check --locked -p hrm-trainer --features cuda --target-dir target/cuda-kernels
    ;;
  build)
    fetch "${check_wheels[@]}" "${link_wheels[@]}"
    environment
    cargo fetch --locked
    link_stubs
    cargo build --locked --release --bin hrm --features cuda --target-dir target/cuda-release
    echo "built target/cuda-release/release/hrm (needs libcuda.so.1 from the NVIDIA driver and the CUDA 13 libraries at run time)"
    ;;
  env)
    environment
    echo "export CUDA_HOME=$CUDA_HOME PATH=$cuda_home/bin:\$PATH CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
    ;;
  *)
    echo "usage: $0 check|check-kernels|build|env" >&2
    exit 2
    ;;
esac
