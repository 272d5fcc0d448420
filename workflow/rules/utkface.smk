# UTKFace: labels from file names, a stratified split, and one packed array.


rule utkface_labels:
    input:
        config["utkface"],
    output:
        labels="results/utkface/all_labels.csv",
        rejects="results/utkface/rejects.csv",
    log:
        "results/logs/utkface/labels.log",
    benchmark:
        "results/benchmarks/utkface/labels.tsv"
    conda:
        "../../envs/faces.yaml"
    script:
        "../scripts/utkface_labels.py"


rule utkface_split:
    input:
        "results/utkface/all_labels.csv",
    output:
        "results/utkface/split.csv",
    params:
        split=config["utkface_split"],
    log:
        "results/logs/utkface/split.log",
    benchmark:
        "results/benchmarks/utkface/split.tsv"
    conda:
        "../../envs/faces.yaml"
    script:
        "../scripts/utkface_split.py"


rule utkface_pack:
    input:
        source=config["utkface"],
        split="results/utkface/split.csv",
    output:
        images="results/utkface/images.npy",
        labels="results/utkface/labels.csv",
    params:
        image_size=config["image_size"],
    threads: 2
    resources:
        mem_mb=4000,
    log:
        "results/logs/utkface/pack.log",
    benchmark:
        "results/benchmarks/utkface/pack.tsv"
    conda:
        "../../envs/faces.yaml"
    script:
        "../scripts/utkface_pack.py"
