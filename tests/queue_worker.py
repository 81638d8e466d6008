"""Run as a separate process by the queue tests: queue items in a loop, forever or N times."""

import sys

import numpy as np

from napari_unet.core.edit_queue import EditQueue


def main(workspace: str, tag: str, count: int) -> None:
    queue = EditQueue(workspace)
    for n in range(count if count > 0 else 10**9):
        rng = np.random.default_rng(abs(hash((tag, n))) % 2**32)
        image = rng.normal(size=(2, 64, 64)).astype(np.float32)
        mask = (rng.random((64, 64)) > 0.8).astype(np.uint8)
        queue.add(
            image,
            mask,
            None,
            source_path=f"/data/{tag}.nii.gz",
            source_sha256=tag,
            axis=0,
            axis_name="axial",
            slice_index=n,
            affine=np.eye(4),
            spacing=(1.0, 1.0, 1.0),
            note=f"{tag}-{n}",
        )
        sys.stdout.write(f"{n}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
