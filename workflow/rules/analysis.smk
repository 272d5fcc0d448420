# Results tables and the papermill-executed analysis notebooks.

RESULT_FIGURES = ["beats_baseline", "placement", "depth", "delta_m", "training_curves"]


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
    output:
        notebook="results/notebooks/results_{dataset}.ipynb",
        html="results/notebooks/results_{dataset}.html",
        figures=report(
            expand("results/figures/{{dataset}}_{figure}.{extension}", figure=RESULT_FIGURES, extension=["png"]),
            category="Figures",
            subcategory="{dataset}",
            caption="../report/results_figures.rst",
        ),
        pdfs=expand("results/figures/{{dataset}}_{figure}.pdf", figure=RESULT_FIGURES),
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
        html="results/notebooks/dataset_overview.html",
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
