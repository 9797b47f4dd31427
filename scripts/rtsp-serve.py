#!/usr/bin/python3
"""Serves an H.264 video file as an IP camera would: RTSP on rtsp://127.0.0.1:PORT/lane, in real time.

    /usr/bin/python3 scripts/rtsp-serve.py VIDEO.mkv --port 8554 [--path /lane] [--loop]

GStreamer's RTSP server through its Python bindings (Debian: gir1.2-gst-rtsp-server-1.0, python3-gi,
gstreamer1.0-plugins-good and -bad; scripts/setup.sh installs them). The file must hold H.264 in Matroska
(`ffmpeg -i in.avi -c:v libx264 -bf 0 -g 15 out.mkv`); it is sent as it is, not re-encoded, paced by the
pipeline clock like a live camera. Every client gets its own stream from the start of the file; with
--loop the file plays again and again (a camera never ends), without it the stream ends with the file.
The tests use it to check that the daemon reads a 1080p stream and reconnects when the camera goes away;
an installer can use it to try a box against a recorded clip. Prints "ready" once it listens.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/lane")
    ap.add_argument("--loop", action="store_true", help="play the file again at its end (a camera never ends)")
    args = ap.parse_args()

    Gst.init(None)
    # The file's H.264 as it is (no re-encode: the server costs next to nothing), one RTP stream.
    location = args.video.replace("\\", "\\\\").replace('"', '\\"')
    launch = (
        f'( filesrc location="{location}" ! matroskademux ! h264parse config-interval=-1 '
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)
    if args.loop:
        # At the end of the file, seek back to its start instead of ending the stream.
        def on_configure(_factory, media):
            pipeline = media.get_element()

            def on_eos(_bus, _msg):
                pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
                return True

            bus = pipeline.get_bus()
            if bus is not None:
                bus.add_signal_watch()
                bus.connect("message::eos", on_eos)

        factory.connect("media-configure", on_configure)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"rtsp-serve: cannot listen on port {args.port}", file=sys.stderr)
        sys.exit(1)

    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"ready rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
