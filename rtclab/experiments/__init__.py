"""rtclab.experiments"""
