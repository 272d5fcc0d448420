# Results tables and the papermill-executed analysis notebooks. Every figure is
# a declared output, PNG for the report and PDF for print.

RESULT_FIGURES = [
    "beats_baseline",
    "placement",
    "depth",
    "delta_m",
    "training_curves",
    "cross_stitch_weights",
    "group_metrics",
]
# Only the dyadic table has participant-level columns, so only its notebook draws these.
PARTICIPANT_FIGURES = ["participant_metrics", "participant_delta_m"]


rule results_table:
    input:
        metrics=get_eval_metrics,
    output:
        csv=report(
            "results/tables/{dataset}_results.csv",
            category="Tables",
            caption="../report/results_table.rst",
        ),
        markdown="results/tables/{dataset}_results.md",
        latex="results/tables/{dataset}_results.tex",
    params:
        dataset="{dataset}",
    log:
        "results/logs/tables/{dataset}.log",
    benchmark:
        "results/benchmarks/tables/{dataset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/results_table.py"


rule results_notebook:
    input:
        notebook="workflow/notebooks/results.ipynb",
        table="results/tables/{dataset}_results.csv",
        histories=get_histories,
        cross_stitch_checkpoints=get_cross_stitch_checkpoints,
        metrics=get_eval_metrics,
    output:
        notebook="results/notebooks/results_{dataset}.ipynb",
        html=report(
            "results/notebooks/results_{dataset}.html",
            category="Notebooks",
            caption="../report/results_notebook.rst",
        ),
        **get_result_figure_outputs(RESULT_FIGURES),
    wildcard_constraints:
        dataset="utk",
    params:
        parameters=get_results_notebook_parameters,
    log:
        "results/logs/notebooks/results_{dataset}.log",
    benchmark:
        "results/benchmarks/notebooks/results_{dataset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/run_notebook.py"


use rule results_notebook as results_notebook_dyadic with:
    output:
        notebook="results/notebooks/results_{dataset}.ipynb",
        html=report(
            "results/notebooks/results_{dataset}.html",
            category="Notebooks",
            caption="../report/results_notebook.rst",
        ),
        **get_result_figure_outputs(RESULT_FIGURES + PARTICIPANT_FIGURES),
    wildcard_constraints:
        dataset="dyadic",
    log:
        "results/logs/notebooks/results_{dataset}.log",
    benchmark:
        "results/benchmarks/notebooks/results_{dataset}.tsv"


rule cam_notebook:
    input:
        notebook="workflow/notebooks/cam.ipynb",
        table="results/tables/utk_results.csv",
        checkpoints=get_cam_checkpoints(),
        utk_images="results/utkface/images.npy",
        utk_labels="results/utkface/labels.csv",
        dyadic_images="results/dyadic/images.npy",
        dyadic_labels="results/dyadic/labels.csv",
    output:
        notebook="results/notebooks/cam.ipynb",
        html=report("results/notebooks/cam.html", category="Notebooks", caption="../report/cam_notebook.rst"),
        utk_png=report(
            "results/figures/cam_utk.png", category="Figures", subcategory="Class activation maps", caption="../report/cam.rst"
        ),
        dyadic_png=report(
            "results/figures/cam_dyadic.png", category="Figures", subcategory="Class activation maps", caption="../report/cam.rst"
        ),
        utk_pdf="results/figures/cam_utk.pdf",
        dyadic_pdf="results/figures/cam_dyadic.pdf",
    params:
        parameters=get_cam_notebook_parameters,
    log:
        "results/logs/notebooks/cam.log",
    benchmark:
        "results/benchmarks/notebooks/cam.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/run_notebook.py"


rule dataset_overview:
    input:
        notebook="workflow/notebooks/dataset_overview.ipynb",
        utk_labels="results/utkface/labels.csv",
        utk_rejects="results/utkface/rejects.csv",
        dyadic_labels="results/dyadic/labels.csv",
        dyadic_qc="results/dyadic/qc.csv",
        montages=get_recording_files("montages"),
    output:
        notebook="results/notebooks/dataset_overview.ipynb",
        html=report(
            "results/notebooks/dataset_overview.html",
            category="Notebooks",
            caption="../report/overview_notebook.rst",
        ),
        figures=report(
            expand("results/figures/overview_{dataset}_labels.png", dataset=DATASETS),
            category="Figures",
            subcategory="Data",
            caption="../report/overview_figures.rst",
        ),
        pdfs=expand("results/figures/overview_{dataset}_labels.pdf", dataset=DATASETS),
    params:
        parameters=get_overview_notebook_parameters,
    log:
        "results/logs/notebooks/dataset_overview.log",
    benchmark:
        "results/benchmarks/notebooks/dataset_overview.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/run_notebook.py"
