# Dyadic videos: one job per recording (frames, faces, crops, labels), then one merged pack.
# A recording's job reads only its own recordings.csv row and participants' labels
# (as params), so adding a video or editing one participant reruns only the jobs they touch.


rule dyadic_faces:
    input:
        video=get_recording_video,
        detector=get_detector_files,
    output:
        images="results/dyadic/recordings/{session}/{task}/{view}/images.npy",
        labels="results/dyadic/recordings/{session}/{task}/{view}/labels.csv",
        qc="results/dyadic/recordings/{session}/{task}/{view}/qc.csv",
        montages=directory("results/dyadic/recordings/{session}/{task}/{view}/montages"),
    params:
        recording=get_recording,
        participants=get_recording_participants,
        settings=config["dyadic_faces"],
        image_size=config["image_size"],
        detector_dir=get_detector_dir(),
    threads: 1
    log:
        "results/logs/dyadic/{session}/{task}/{view}.log",
    benchmark:
        "results/benchmarks/dyadic/{session}/{task}/{view}.tsv"
    conda:
        "../../envs/faces.yaml"
    script:
        "../scripts/dyadic_faces.py"


rule dyadic_merge:
    input:
        images=get_recording_files("images.npy"),
        labels=get_recording_files("labels.csv"),
        qc=get_recording_files("qc.csv"),
    output:
        images="results/dyadic/images.npy",
        labels="results/dyadic/labels.csv",
        qc=report("results/dyadic/qc.csv", category="Dyadic data", caption="../report/dyadic_qc.rst"),
    log:
        "results/logs/dyadic/merge.log",
    benchmark:
        "results/benchmarks/dyadic/merge.tsv"
    conda:
        "../../envs/faces.yaml"
    script:
        "../scripts/dyadic_merge.py"
