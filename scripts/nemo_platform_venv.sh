#!/usr/bin/env bash
# Placeholder until the NeMo Platform lane lands; see README "NeMo Platform".
echo "nemo-platform: not set up yet"
exit 0
