"""Every command-line option, defined once; commands take them by these names (typer `Annotated`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# -- what to run on ----------------------------------------------------------------------------------
Paths = Annotated[list[Path], typer.Argument(help="Image files or folders.", show_default=False)]
Models = Annotated[str, typer.Option("--models", "-m", help="all, or comma-separated names")]
Recursive = Annotated[bool, typer.Option("--recursive/--no-recursive", help="Search folders recursively.")]

# -- output ------------------------------------------------------------------------------------------
Format = Annotated[str, typer.Option("--format", "-f", help="table | json | jsonl | csv | html (html needs --out)")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the output to this file instead of stdout.")]
Threshold = Annotated[
    float | None, typer.Option("--threshold", help="Display threshold, within 0 and 1; raw scores stay in JSON.")
]
Top = Annotated[
    int,
    typer.Option(
        "--top",
        help="Tags shown per model, and rows shown, in the table (0 = all); "
        "display only: the comparison uses --compare-top.",
    ),
]

# -- how models run ----------------------------------------------------------------------------------
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        help="Seconds per image before the runner is killed (more than 0; default: the model's timeout_s, else 60).",
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | mps")]
Dtype = Annotated[
    str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16 (auto: bf16/fp16 on GPU, fp32 on CPU)")
]
Offline = Annotated[bool, typer.Option("--offline", help="Never touch the network (HF cache / --weights only).")]
Weights = Annotated[
    list[str] | None,
    typer.Option(
        "--weights",
        help="MODEL=PATH local weights (repeatable): a snapshot folder of the model, or a Hugging Face "
        "cache root holding its pinned revision.",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show the runners' stderr live.")]
Warmup = Annotated[bool, typer.Option("--warmup", help="Time one warm-up inference after loading.")]
Batch = Annotated[int, typer.Option("--batch-size", help="Images per infer request.")]
ExactDecode = Annotated[
    bool,
    typer.Option(
        "--exact-decode",
        help="Decode every photo at full size, as each model's reference preprocessing does "
        "(default: JPEGs are decoded at the smallest 1/2, 1/4, 1/8 scale the model can use).",
    ),
]
Raw = Annotated[
    str,
    typer.Option(
        "--raw",
        help="Camera RAW files: auto (the embedded JPEG preview when it is at least the size the model needs, "
        "else LibRaw's develop), preview (always the preview, if the file has one) or develop.",
    ),
]
RawPairs = Annotated[
    str,
    typer.Option(
        "--raw-pairs",
        help="A RAW and a JPEG of the same shot (same folder, same stem): jpeg (one photo, analysed "
        "from the JPEG, the RAW listed under seen_as) or both (two photos).",
    ),
]
Parallel = Annotated[int, typer.Option("--parallel", help="Models run at once (each on its share of the cores).")]
Cluster = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        envvar="MLTAG_CLUSTER",
        help="Run the models on a Ray cluster: auto (RAY_ADDRESS, else the one "
        "`ray start` runs here), ray://HOST:PORT, HOST:PORT, or local (a "
        "private Ray on this machine). Needs pip install 'mltag[ray]'.",
    ),
]
ClusterParallel = Annotated[
    int | None,
    typer.Option(
        "--cluster-parallel",
        metavar="N",
        help="With --cluster: N replicas per model (default: from "
        "each model's memory_mb / GPU need and the nodes' "
        "resources).",
    ),
]
Option = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        help="KEY=VALUE adapter option for every model, or "
        "MODEL.KEY=VALUE for one (VALUE parsed as JSON "
        "when it can be).",
    ),
]
Yes = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        envvar="MLTAG_YES",
        help="Silence the notice that a hosted model's photos leave this machine "
        "(for scripts; MLTAG_YES=1 does the same).",
    ),
]
Retry = Annotated[
    bool, typer.Option("--retry-crashed/--no-retry-crashed", help="Retry an image once after it crashed the runner.")
]

# -- the results store -------------------------------------------------------------------------------
StorePath = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Results store (SQLite), written as cells arrive; a re-run skips cells already done with the "
        "same model revision and options. Default: results.sqlite in mltag's user data folder "
        "($MLTAG_HOME, else e.g. ~/.local/share/mltag), one store for every archive; nothing is "
        "ever written inside the analysed folders.",
    ),
]
StoredFrom = Annotated[
    Path | None,
    typer.Option(
        "--store", help="The results store. Default: the one in mltag's user data folder ($MLTAG_HOME overrides)."
    ),
]
NoStore = Annotated[bool, typer.Option("--no-store", help="One-off: neither read nor write a results store.")]
Force = Annotated[bool, typer.Option("--force", help="Recompute cells the store already has done.")]
Rehash = Annotated[
    bool,
    typer.Option(
        "--rehash",
        help="Read and hash every file again. By default a file whose "
        "size, modification time, device and inode are those it had "
        "when the store last hashed it is not read again.",
    ),
]

# -- captioners and the judge ------------------------------------------------------------------------
Prompt = Annotated[
    str | None,
    typer.Option("--prompt", help="Captioners: the description prompt (default: each model.toml's [infer] prompt)."),
]
TagsPrompt = Annotated[
    str | None, typer.Option("--tags-prompt", help="Captioners: the prompt asking for a comma-separated tag list.")
]
Ask = Annotated[
    str | None,
    typer.Option(
        "--ask",
        help="Captioners: caption | tags | both (default: model.toml's "
        "ask, usually caption). tags/both skip captioners without a "
        "tags prompt (BLIP).",
    ),
]
Quantize = Annotated[
    int | None,
    typer.Option("--quantize", help="Captioners and the judge: load in 4 or 8 bits (bitsandbytes, CUDA only)."),
]
Judge = Annotated[
    str | None,
    typer.Option(
        "--judge",
        help="After the models, merge their outputs per image with "
        "this judge: a text LLM (qwen25-judge), or any "
        "captioner, which also sees the photo (e.g. qwen25vl; "
        "its column: qwen25vl-judge).",
    ),
]

# -- the comparison (orchestrator/compare; shown by table, json and html) ------------------------------
CompareTop = Annotated[
    int,
    typer.Option(
        "--compare-top",
        help="Tags per model and image that the matrix, the "
        "consensus and the agreement compare (0 = every tag "
        "above --threshold).",
    ),
]
ConsensusMin = Annotated[
    int | None,
    typer.Option(
        "--consensus-min",
        metavar="K",
        help="CONSENSUS lists the tags at least K models gave (default: 3/4 of the models that answered, rounded up).",
    ),
]
ShowMatrix = Annotated[
    bool, typer.Option("--show-matrix", help="Table: the tag x model agreement matrix (images, mean score).")
]
ShowTiming = Annotated[
    bool,
    typer.Option(
        "--show-timing", help="Table: load, warm-up, mean / p50 / p95 inference and images per second per model."
    ),
]
ShowConfidence = Annotated[
    list[str] | None,
    typer.Option(
        "--show-confidence", metavar="TAG", help="Table: TAG's confidence across models as bars (repeatable)."
    ),
]
Synonyms = Annotated[
    Path | None,
    typer.Option("--synonyms", help="Synonym map for comparing tags: one 'derelict = abandoned' per line, # comments."),
]
