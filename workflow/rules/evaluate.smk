# Evaluation of every trained run on the UTKFace test split and on the dyadic faces.


rule evaluate:
    input:
        unpack(get_eval_pack),
    output:
        predictions="results/eval/{dataset}/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/predictions.csv",
        metrics="results/eval/{dataset}/{grouping}/{architecture}/{placement}/{depth}/seed{seed}/metrics.json",
    params:
        dataset="{dataset}",
        split=get_eval_split,
        batch_size=config["training"]["eval_batch_size"],
        device=config["training"]["device"],
    threads: config["training"]["threads"]
    resources:
        gpu=1,
    log:
        "results/logs/eval/{dataset}/{grouping}/{architecture}/{placement}/{depth}/seed{seed}.log",
    benchmark:
        "results/benchmarks/eval/{dataset}/{grouping}/{architecture}/{placement}/{depth}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/evaluate.py"
