"""Tasks: what differs between XNLI (sentence-pair classification) and MLQA (extractive QA).

    specs.py          static facts per task (languages, metrics, default budget): what the config needs
    base.py           the Task interface the stages call
    registry.py       get_task(name): a run or trial resolves its task once and passes it down
    xnli.py, mlqa.py  the two tasks
    nli.py, extractive_qa.py   the generic machinery they use (pair classification, span extraction)
    qa_eval.py        MLQA's official EM/F1, with its command-line interface
"""
