"""rtclab.ice"""
