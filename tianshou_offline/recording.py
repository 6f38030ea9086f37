"""placeholder"""
class EpisodeRecorder:  # replaced below
    pass
