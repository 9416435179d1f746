"""The teacher: one loader for every teacher reference, and the Piper ONNX rebuild.

:func:`~nixdistill.teacher.loader.load_teacher` resolves a nixdistill run, a VITS or vits2
``G_*.pth``, a Piper ``.onnx`` or an installed voice package into one frozen
:class:`~nixdistill.teachers.VITS`; foreign key names are translated here and nowhere else.
"""
