package initrd

import (
	"bufio"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// compressFile writes src zstd-compressed to dst. One encoder goroutine and a
// fixed window keep the output deterministic, and an 8 MiB window stays
// within what the kernel's initramfs decompressor accepts.
func compressFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	enc, err := zstd.NewWriter(bw,
		zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(8<<20),
		zstd.WithEncoderCRC(true),
	)
	if err != nil {
		out.Close()
		return 0, err
	}
	if _, err := io.Copy(enc, in); err != nil {
		enc.Close()
		out.Close()
		return 0, err
	}
	if err := enc.Close(); err != nil {
		out.Close()
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		out.Close()
		return 0, err
	}
	st, err := out.Stat()
	if err != nil {
		out.Close()
		return 0, err
	}
	return st.Size(), out.Close()
}
