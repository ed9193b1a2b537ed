#!/usr/bin/env bash
# The per-architecture lists of a release's merged tarballs, in the form Kata's
# kata-release-tarball-inputs.sh gives them (amd64 in full, one ppc64le list).

set -o errexit -o nounset -o pipefail

kata_static_tarball_inputs() {
	local arch="${1}"

	case "${arch}" in
		amd64)
			cat <<'EOF'
kata-static-cloud-hypervisor.tar.zst
kata-static-kernel-debug.tar.zst
kata-static-kernel-dragonball-experimental.tar.zst
kata-static-kernel-nvidia-gpu.tar.zst
kata-static-kernel.tar.zst
kata-static-nydus.tar.zst
kata-static-openvmm.tar.zst
kata-static-ovmf-sev.tar.zst
kata-static-ovmf-tdx.tar.zst
kata-static-ovmf.tar.zst
kata-static-qemu-no-shared-fs.tar.zst
kata-static-qemu-snp-experimental.tar.zst
kata-static-qemu-tdx-experimental.tar.zst
kata-static-qemu.tar.zst
kata-static-rootfs-image-coco-extension.tar.zst
kata-static-rootfs-image-devkit-extension.tar.zst
kata-static-rootfs-image-mariner.tar.zst
kata-static-rootfs-image-nvidia-gpu-extension.tar.zst
kata-static-rootfs-image-nvidia.tar.zst
kata-static-rootfs-image.tar.zst
kata-static-rootfs-initrd-confidential.tar.zst
kata-static-rootfs-initrd.tar.zst
kata-static-shim-v2-rust.tar.zst
kata-static-virtiofsd.tar.zst
EOF
			;;
		ppc64le)
			cat <<'EOF'
kata-static-kernel.tar.zst
kata-static-qemu.tar.zst
kata-static-rootfs-initrd.tar.zst
kata-static-shim-v2-rust.tar.zst
kata-static-virtiofsd.tar.zst
EOF
			;;
	esac
}

kata_go_tarball_inputs() {
	local arch="${1}"

	case "${arch}" in
		amd64)
			cat <<'EOF'
kata-static-cloud-hypervisor.tar.zst
kata-static-firecracker.tar.zst
kata-static-kernel-debug.tar.zst
kata-static-kernel-nvidia-gpu.tar.zst
kata-static-kernel.tar.zst
kata-static-nydus.tar.zst
kata-static-ovmf-sev.tar.zst
kata-static-ovmf-tdx.tar.zst
kata-static-ovmf.tar.zst
kata-static-qemu-snp-experimental.tar.zst
kata-static-qemu-tdx-experimental.tar.zst
kata-static-qemu.tar.zst
kata-static-rootfs-image-confidential.tar.zst
kata-static-rootfs-image-mariner.tar.zst
kata-static-rootfs-image-nvidia-gpu-confidential.tar.zst
kata-static-rootfs-image-nvidia-gpu.tar.zst
kata-static-rootfs-image-nvidia.tar.zst
kata-static-rootfs-image.tar.zst
kata-static-rootfs-initrd-confidential.tar.zst
kata-static-rootfs-initrd.tar.zst
kata-static-shim-v2-go.tar.zst
kata-static-virtiofsd.tar.zst
EOF
			;;
		ppc64le)
			cat <<'EOF'
kata-static-kernel.tar.zst
kata-static-qemu.tar.zst
kata-static-rootfs-initrd.tar.zst
kata-static-shim-v2-go.tar.zst
kata-static-virtiofsd.tar.zst
EOF
			;;
	esac
}

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
	case "${1:-}" in
		kata-static) kata_static_tarball_inputs "${2}" ;;
		kata-go-static) kata_go_tarball_inputs "${2}" ;;
		*) echo "usage: ${0} {kata-static|kata-go-static} ARCH" >&2; exit 1 ;;
	esac
fi
