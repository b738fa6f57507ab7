"""Batch-convert FBX motion files to BVH with Blender's command line (the toolkit reads BVH, not FBX).

    python tools/fbx_to_bvh.py IN_DIR OUT_DIR [--blender /path/to/blender] [--fps 30]

Finds Blender (--blender, $BLENDER, or `blender` on PATH) and runs this same file inside it
(`blender --background --factory-startup --python tools/fbx_to_bvh.py -- --inside IN_DIR OUT_DIR`): each
`*.fbx` under IN_DIR is imported into an empty scene and its armature's action written as
`OUT_DIR/<relative path>.bvh` (root translation, Euler rotations, the file's own frame range). Then load the folder
with `kpop_helpers.data.io.load_clips(OUT_DIR)`: the rig is mapped by its bone names. Not run in this project's
tests (no Blender here); the wrapper's arguments and its error without Blender are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path


def find_blender(explicit: str | None = None) -> str:
    """The Blender executable: --blender, $BLENDER or `blender` on PATH; SystemExit with what to do otherwise."""
    for candidate in (explicit, os.environ.get("BLENDER"), shutil.which("blender")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise SystemExit("Blender was not found: install it (https://www.blender.org/download/), then pass "
                     "--blender /path/to/blender or set $BLENDER. FBX files cannot be read without it.")


def convert_inside_blender(in_dir: Path, out_dir: Path, fps: float | None) -> int:
    """Runs inside Blender: every FBX under in_dir to a BVH under out_dir; returns how many failed."""
    import bpy  # only inside Blender

    failed = 0
    for fbx in sorted(in_dir.rglob("*.fbx")):
        target = out_dir / fbx.relative_to(in_dir).with_suffix(".bvh")
        target.parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        try:
            bpy.ops.import_scene.fbx(filepath=str(fbx), automatic_bone_orientation=True)
            armatures = [o for o in bpy.context.scene.objects if o.type == "ARMATURE"]
            if not armatures:
                raise RuntimeError("no armature in the file")
            armature = armatures[0]
            bpy.context.view_layer.objects.active = armature
            armature.select_set(True)
            action = armature.animation_data.action if armature.animation_data else None
            if action is None:
                raise RuntimeError("the armature has no animation")
            start, end = (int(round(v)) for v in action.frame_range)
            if fps:
                bpy.context.scene.render.fps = int(round(fps))
            partial = target.with_name(f".{target.name}.partial")
            bpy.ops.export_anim.bvh(filepath=str(partial), frame_start=start, frame_end=end, root_transform_only=True)
            os.replace(partial, target)  # a converted file is whole or absent
            print(f"ok {fbx} -> {target} ({end - start + 1} frames)")
        except Exception as exc:  # one bad file must not stop the batch: report it and go on
            failed += 1
            print(f"FAILED {fbx}: {exc}", file=sys.stderr)
    return failed


def main(argv: list[str] | None = None) -> int:
    """Outside Blender: start it on this file; inside (after `--`): convert."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:  # Blender passes its own arguments first
        argv = argv[argv.index("--") + 1:]
    p = argparse.ArgumentParser(prog="python tools/fbx_to_bvh.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("in_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--blender", default=None)
    p.add_argument("--fps", type=float, default=None, help="scene frame rate for the export (default: the file's)")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inside:
        return 1 if convert_inside_blender(args.in_dir, args.out_dir, args.fps) else 0
    if not args.in_dir.is_dir():
        p.error(f"{args.in_dir} is not a folder")
    if not any(args.in_dir.rglob("*.fbx")):
        p.error(f"no .fbx files under {args.in_dir}")
    command = [find_blender(args.blender), "--background", "--factory-startup", "--python", str(Path(__file__)),
               "--", "--inside", str(args.in_dir), str(args.out_dir)] + (["--fps", str(args.fps)] if args.fps else [])
    return subprocess.run(command).returncode


if __name__ == "__main__":
    raise SystemExit(main())
