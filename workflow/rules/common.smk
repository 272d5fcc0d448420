# Config validation, the grid of training runs, and the input functions of every rule.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The library lives in src/; a workflow run without `pip install -e .` still finds it.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from facemtl.config import ConfigError, check_data_paths, load_schema, validate_config
from facemtl.tasks import grouping_name

try:
    validate_config(config, load_schema(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"))
    check_data_paths(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

from facemtl.dyadic import read_participants, read_recordings

RECORDINGS = read_recordings(Path(config["dyadic"])).set_index(["session_id", "task", "view"])
PARTICIPANTS = read_participants(Path(config["dyadic"])).set_index("participant_id")
DATASETS = ["utk", "dyadic"]

wildcard_constraints:
    grouping=r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)+",
    architecture="baseline|hps|cross_stitch",
    placement="none|normal|backwards",
    depth=r"\d+",
    seed=r"\d+",
    dataset="|".join(DATASETS),
    session="[^/]+",
    task="[^/]+",
    view="[^/]+",


def get_configurations():
    """Return one dict per trained configuration (grouping, architecture, placement, depth)."""
    configurations = []
    for grouping in config["groupings"]:
        name = grouping_name(grouping)
        configurations.append(dict(grouping=name, architecture="baseline", placement="none", depth=0))
        for architecture in ("hps", "cross_stitch"):
            settings = config["architectures"][architecture]
            for placement in settings["placements"]:
                for depth in sorted(settings["depths"]):
                    configurations.append(
                        dict(grouping=name, architecture=architecture, placement=placement, depth=depth)
                    )
    return configurations


def get_runs():
    """Return one dict per training run: each configuration once per seed."""
    return [dict(configuration, seed=seed) for configuration in get_configurations() for seed in config["seeds"]]


def get_run_files(pattern, **fixed):
    """Format ``pattern`` once per training run; its fields are the run's wildcards and ``fixed``."""
    return [pattern.format(**run, **fixed) for run in get_runs()]


def get_grouping_tasks(grouping):
    for tasks in config["groupings"]:
        if grouping_name(tasks) == grouping:
            return tasks
    raise WorkflowError(f"grouping {grouping!r} is not in the config's groupings")


def get_train_settings(wildcards):
    """Return the settings of one training run: only what training reads, so other edits rerun nothing."""
    tasks = get_grouping_tasks(wildcards.grouping)
    settings = dict(
        grouping=wildcards.grouping,
        architecture=wildcards.architecture,
        placement=wildcards.placement,
        depth=int(wildcards.depth),
        seed=int(wildcards.seed),
        tasks={name: config["tasks"][name] for name in tasks},
        model=config["model"],
        training={key: value for key, value in config["training"].items() if key not in ("threads", "mem_mb")},
    )
    if wildcards.architecture == "cross_stitch":
        settings["cross_stitch"] = {
            key: config["architectures"]["cross_stitch"][key] for key in ("init", "diagonal", "lr_multiplier")
        }
    return settings


def get_baseline_checkpoint(wildcards):
    """Return the baseline checkpoint that a cross-stitch run starts from (same grouping and seed)."""
    if wildcards.architecture != "cross_stitch":
        return []
    return f"results/models/{wildcards.grouping}/baseline/none/0/seed{wildcards.seed}/model.pt"


def get_recording(wildcards):
    """Return the recordings.csv row of one recording as a dict, participants as a list."""
    row = RECORDINGS.loc[(wildcards.session, wildcards.task, wildcards.view)]
    return dict(session_id=wildcards.session, task=wildcards.task, view=wildcards.view, **row.to_dict())


def get_recording_video(wildcards):
    return str(Path(config["dyadic"]) / get_recording(wildcards)["video"])


def get_recording_participants(wildcards):
    """Return the labels of the recording's participants only, so editing another participant reruns nothing here."""
    return {pid: PARTICIPANTS.loc[pid].to_dict() for pid in get_recording(wildcards)["participants"]}


def get_detector_files(wildcards):
    if config["dyadic_faces"]["detector"] != "blazeface":
        return []
    directory = Path(config["blazeface"])
    if config["dyadic_faces"]["blazeface_model"] == "back":
        return [str(directory / "blazefaceback.pth"), str(directory / "anchorsback.npy")]
    return [str(directory / "blazeface.pth"), str(directory / "anchors.npy")]


def get_detector_dir():
    return config["blazeface"] if config["dyadic_faces"]["detector"] == "blazeface" else ""


def get_recording_files(name):
    return [
        f"results/dyadic/recordings/{session}/{task}/{view}/{name}"
        for session, task, view in RECORDINGS.index
    ]


def get_eval_pack(wildcards):
    """Return the run's checkpoint and the pack that evaluation reads."""
    pack = "results/utkface" if wildcards.dataset == "utk" else "results/dyadic"
    model = "results/models/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/model.pt".format(**wildcards)
    return dict(checkpoint=model, images=f"{pack}/images.npy", labels=f"{pack}/labels.csv")


def get_eval_split(wildcards):
    """Return the split that evaluation reads: the UTKFace test split, or every dyadic face."""
    return "test" if wildcards.dataset == "utk" else None


def get_eval_metrics(wildcards):
    return get_run_files(
        "results/eval/{dataset}/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/metrics.json",
        dataset=wildcards.dataset,
    )


def get_histories(wildcards):
    return get_run_files("results/models/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/history.csv")


def get_cross_stitch_checkpoints(wildcards):
    """Return the checkpoints of every cross-stitch run, whose learned unit weights the results notebook draws."""
    return [
        "results/models/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/model.pt".format(**run)
        for run in get_runs()
        if run["architecture"] == "cross_stitch"
    ]


def get_cam_grouping():
    """Return the name of the grouping with the most tasks (the first such in the config), whose models Grad-CAM explains."""
    return grouping_name(max(config["groupings"], key=len))


def get_cam_checkpoints():
    """Return the checkpoint of every configuration of the Grad-CAM grouping, at the lowest seed.

    The notebook picks the baseline, best HPS and best cross-stitch model among
    them from the results table, so the DAG stays fixed whatever the results.
    """
    grouping = get_cam_grouping()
    seed = min(config["seeds"])
    return [
        "results/models/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/model.pt".format(**configuration, seed=seed)
        for configuration in get_configurations()
        if configuration["grouping"] == grouping
    ]


def get_final_outputs():
    return (
        expand("results/tables/{dataset}_results.csv", dataset=DATASETS)
        + expand("results/notebooks/results_{dataset}.ipynb", dataset=DATASETS)
        + [
            "results/dyadic/qc.csv",
            "results/notebooks/dataset_overview.ipynb",
            "results/notebooks/cam.ipynb",
        ]
    )


def get_result_figure_outputs(figures):
    """Return the named PNG outputs (registered in the report, one caption each) and PDF outputs of results figures."""
    outputs = {
        f"{figure}_png": report(
            f"results/figures/{{dataset}}_{figure}.png",
            category="Figures",
            subcategory="{dataset} results",
            caption=f"../report/results_{figure}.rst",
        )
        for figure in figures
    }
    outputs.update({f"{figure}_pdf": f"results/figures/{{dataset}}_{figure}.pdf" for figure in figures})
    return outputs


# The notebook parameter functions below take only wildcards, never `input`: Snakemake
# evaluates params that read `input` after the DAG is built and stores them as empty
# in its metadata, so a changed setting among them would rerun nothing.


def get_results_notebook_parameters(wildcards):
    """Return the papermill parameters of the results notebook: its inputs and where figures go."""
    return dict(
        results_table=f"results/tables/{wildcards.dataset}_results.csv",
        histories=get_histories(wildcards),
        cross_stitch_checkpoints=get_cross_stitch_checkpoints(wildcards),
        metrics=get_eval_metrics(wildcards),
        dataset=wildcards.dataset,
        figure_dir="results/figures",
        figure_prefix=wildcards.dataset,
    )


def get_cam_notebook_parameters(wildcards):
    """Return the papermill parameters of the Grad-CAM notebook: its inputs, the analysis settings and where figures go."""
    return dict(
        results_table="results/tables/utk_results.csv",
        checkpoints=get_cam_checkpoints(),
        utk_images="results/utkface/images.npy",
        utk_labels="results/utkface/labels.csv",
        dyadic_images="results/dyadic/images.npy",
        dyadic_labels="results/dyadic/labels.csv",
        faces=config["analysis"]["cam_faces"],
        seed=config["analysis"]["cam_seed"],
        layer=config["analysis"]["cam_layer"],
        figure_dir="results/figures",
        figure_prefix="cam",
    )


def get_overview_notebook_parameters(wildcards):
    return dict(
        utk_labels="results/utkface/labels.csv",
        utk_rejects="results/utkface/rejects.csv",
        dyadic_labels="results/dyadic/labels.csv",
        dyadic_qc="results/dyadic/qc.csv",
        montage_dirs=get_recording_files("montages"),
        figure_dir="results/figures",
        figure_prefix="overview",
    )
