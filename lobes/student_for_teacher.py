"""The DistilHuBERT-style student of any teacher: one hparams line serves Whisper and HF SSL teachers.

A Whisper teacher gets :class:`lobes.whisper_student.DistilWhisper`, an HF SSL
teacher (HuBERT, WavLM, wav2vec 2.0) :class:`lobes.students.DistilHuBERT`; both
are the teacher's front end and first layers with expand-last heads. Unless
given, the predicted layers are DistilHuBERT's choice scaled to the teacher's
depth: a third, two thirds and the last (4, 8, 12 of HuBERT Base; 2, 4, 6 of
Whisper base), so changing the teacher is one argument.
"""

from lobes.students import DistilHuBERT
from lobes.whisper_student import DistilWhisper


def thirds(n_layers):
    """Layers at a third, two thirds and the whole of a depth (distinct, at least 1).

    Example
    -------
    >>> thirds(12), thirds(6), thirds(4), thirds(2)
    ([4, 8, 12], [2, 4, 6], [1, 3, 4], [1, 2])
    """
    return sorted({max(1, round(n_layers * k / 3)) for k in (1, 2, 3)})


def distil_student(teacher, n_layers=2, target_layers=None, init_from_teacher=True, freeze_cnn=True):
    """DistilWhisper for a Whisper teacher, DistilHuBERT otherwise.

    Parameters
    ----------
    teacher : lobes.encoder.FrozenTeacher
        The teacher.
    n_layers : int
        Student layers (2, as DistilHuBERT).
    target_layers : sequence of int, optional
        Teacher layers to predict; default :func:`thirds` the teacher's depth.
    init_from_teacher, freeze_cnn : bool
        As in both students (the front end copied from the teacher and frozen by default:
        its output is then cached with the targets).

    Returns
    -------
    torch.nn.Module
    """
    layers = thirds(teacher.num_layers) if target_layers is None else list(target_layers)
    student_class = DistilWhisper if teacher.is_whisper else DistilHuBERT
    return student_class(teacher, n_layers=n_layers, target_layers=layers, init_from_teacher=init_from_teacher,
                         freeze_cnn=freeze_cnn)
