"""The pipeline stages that both the notebooks and `make demo` call: one typed function per stage.

prepare_assets -> prepare_data -> finetune -> compress -> compress_and_export -> run_benchmark ->
render_previews (render_edit, render_timeline_dance) -> write_report, and choreograph_song (07: a song danced).
Every stage shows a progress bar, returns a small dataclass and stores it as `<stage folder>/result.json`, so a
later notebook finds an earlier one's outputs in the shared work folder (Drive in Colab). `ensure_*` find them
(or restore the EMA weights from the newest checkpoint) and otherwise stop with MissingStageOutput naming the file
and the notebook that makes it; only `smoke=True` (CI size) trains a stand-in.
"""

from kpop_helpers.pipeline.common import MissingStageOutput, load_result, markdown_table, save_result, stage_progress
from kpop_helpers.pipeline.edits import (
    KEEP_CHOICES, EditPreview, LongDancePreview, edit_player, parse_timeline_text, pick_clip, render_edit,
    render_timeline_dance,
)
from kpop_helpers.pipeline.edge_stages import (
    compress, compress_and_export, edge_config_path, ensure_export, export_rows, find_edge_config, run_benchmark,
    write_edge_config,
)
from kpop_helpers.pipeline.handoff import (finish_notebook, load_song_previews, package_results, upload_clips,
                                          write_run_report)
from kpop_helpers.pipeline.previews import (
    compare_variants, ensure_previews, load_previews, onnx_variants, render_previews, show_dances,
)
from kpop_helpers.pipeline.report import write_report
from kpop_helpers.pipeline.results import (
    AssetsResult, BenchmarkResult, CompressionResult, DataResult, DistillResult, ExportResult, FinetuneResult,
    PreviewResult, SongPreview,
)
from kpop_helpers.pipeline.settings import (
    DEMO_PROMPTS, FULL, SMOKE, PipelineSettings, WorkDirs, resolve_work_dir, settings_for, training_steps,
)
from kpop_helpers.pipeline.assets import BaseModel, base_model, prepare_assets, recorded_base_model
from kpop_helpers.pipeline.data_prep import ensure_data, prepare_data, prepare_own_data
from kpop_helpers.pipeline.distilling import distill_flops, distill_run, student_preview
from kpop_helpers.pipeline.training import ensure_weights, finetune, finetune_run, restore_weights
from kpop_helpers.pipeline.song import (
    RUNTIMES, alignment_summary, analyse_song, choreograph_song, download_song_dance,
    parse_section_prompts, pick_song, song_credit, song_files, song_folder, song_plan, song_player_html,
)

__all__ = [
    "KEEP_CHOICES", "EditPreview", "LongDancePreview", "edit_player", "parse_timeline_text", "pick_clip",
    "render_edit", "render_timeline_dance",
    "MissingStageOutput", "finetune_run", "finish_notebook", "onnx_variants", "package_results",
    "prepare_own_data", "recorded_base_model", "restore_weights", "show_dances", "upload_clips",
    "write_run_report",
    "DEMO_PROMPTS", "FULL", "SMOKE", "AssetsResult", "BaseModel", "BenchmarkResult", "CompressionResult",
    "DataResult", "ExportResult", "FinetuneResult", "PipelineSettings", "PreviewResult", "WorkDirs", "base_model",
    "compare_variants", "compress", "compress_and_export", "edge_config_path", "ensure_data", "ensure_export",
    "ensure_previews", "ensure_weights", "export_rows", "finetune", "find_edge_config", "load_previews",
    "load_result", "markdown_table", "prepare_assets", "prepare_data", "render_previews", "resolve_work_dir",
    "run_benchmark", "save_result", "settings_for", "stage_progress", "training_steps", "write_edge_config",
    "write_report",
    "RUNTIMES", "SongPreview", "alignment_summary", "analyse_song", "choreograph_song", "download_song_dance",
    "load_song_previews", "parse_section_prompts", "pick_song", "song_credit", "song_files", "song_folder",
    "song_plan", "song_player_html",
    "DistillResult", "distill_flops", "distill_run", "student_preview",
]
