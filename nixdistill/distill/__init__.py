"""Training: one loop for every stage (teacher, student encoder, student decoder), the teacher's
latents and their cache, the losses, the aligner losses and the discriminators.
"""
