"""The dance prompts the project measures with: the benchmark's quality set and the text-tower checks share them."""

# One prompt per generated dance of the quality set; varied styles so diversity and FID mean something.
DANCE_PROMPTS = (
    "a powerful girl-crush dance with sharp arm hits and strong stomps",
    "a cute aegyo dance with small bounces and hand hearts",
    "a laid-back hip-hop groove with a relaxed bounce in the knees",
    "an energetic boy-group dance with big jumps and fast footwork",
    "a smooth sexy concept dance with slow body rolls",
    "a bright retro disco dance with pointing arms and side steps",
    "an intense synchronized chorus with quick spins and arm waves",
    "a gentle ballad dance with soft swaying arms",
    # The second eight: more samples for FID and diversity when a run can afford them (see --prompts).
    "a dancer shuffles the feet quickly side to side in a fast house footwork routine",
    "a fierce girl-crush routine that points up and out with the hands on the beat",
    "a playful aegyo dance that tilts the head side to side with the hands by the face",
    "a hard-hitting boy-group dance that throws punches on every beat from a low stance",
    "a slow lyrical dance that reaches the arms up and turns softly",
    "a hip-hop dancer steps side to side and claps, then bounces on the knees",
    "a house dancer jacks the torso on every beat while the feet move in double time",
    "a boy-group chorus that crouches and jumps off both legs, then lands on the beat",
)
