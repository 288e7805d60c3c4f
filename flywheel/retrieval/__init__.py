"""The retrieval flywheel (``job_type: embedding_job``): retrieval logs -> corpus, splits, mined triplets ->
Recall/nDCG/MRR of candidate embedding models, base and contrastively fine-tuned.

Pure domain code (no Temporal); torch and sentence-transformers are imported lazily where a model runs.
"""
