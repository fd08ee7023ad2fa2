# Pblocks of the reconfigurable partitions on @{part}. The ranges are estimates
# sized like boards/@{board}.yaml's slot resources (about 30% of the device per
# slot); check them in Vivado's floorplanner before a real build.
@{pblocks}
