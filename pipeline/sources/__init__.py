"""Where inputs come from: photo folders, virtual and calibrated rigs, KITTI."""
