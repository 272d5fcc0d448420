# Training: one job per configuration and seed. Every job asks for the one GPU
# (resources gpu=1), so `--resources gpu=1` keeps a single training job on it
# while CPU stages run beside it; without a GPU the job trains on the CPU.


rule train:
    input:
        images="results/utkface/images.npy",
        labels="results/utkface/labels.csv",
        baseline=get_baseline_checkpoint,
    output:
        checkpoint="results/models/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/model.pt",
        history="results/models/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/history.csv",
        metrics="results/models/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/train_metrics.json",
    params:
        settings=get_train_settings,
    threads: config["training"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["training"]["mem_mb"],
    log:
        "results/logs/train/{grouping}/{architecture}/{placement}/{depth}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{grouping}/{architecture}/{placement}/{depth}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
