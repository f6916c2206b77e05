package qemu

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// addVmlinux extracts the uncompressed kernel from k.Vmlinuz next to it and
// records it in k.Vmlinux. Like the kernel's scripts/extract-vmlinux it
// tries every compressed stream in the bzImage until one yields an x86-64
// ELF with a PVH entry point (which qemu can boot directly).
func addVmlinux(ctx context.Context, k *Kernel, progress func(string)) error {
	img, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		return err
	}
	dst := filepath.Join(filepath.Dir(k.Vmlinuz), "vmlinux-"+k.Version)
	progress("extracting the uncompressed kernel for faster boots")
	var last error = fmt.Errorf("no xz or gzip stream found in %s", k.Vmlinuz)
	for _, c := range []struct {
		magic      []byte
		decompress func(io.Reader, io.Writer) error
	}{
		{[]byte("\xfd7zXZ\x00"), xzDecompress(ctx)},
		{[]byte("\x1f\x8b\x08"), gzipDecompress},
	} {
		for off := 0; ; {
			i := bytes.Index(img[off:], c.magic)
			if i < 0 {
				break
			}
			off += i
			if err := extractTo(dst, bytes.NewReader(img[off:]), c.decompress); err != nil {
				last = err
			} else {
				k.Vmlinux = dst
				return nil
			}
			off++
		}
	}
	return fmt.Errorf("could not extract an uncompressed kernel: %v", last)
}

func extractTo(dst string, r io.Reader, decompress func(io.Reader, io.Writer) error) error {
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	derr := decompress(r, f)
	f.Close()
	if err := checkPVH(tmp); err != nil {
		os.Remove(tmp)
		if derr != nil {
			return derr
		}
		return err
	}
	// Decompressors complain about the bytes after the stream; a valid ELF
	// is what counts.
	return os.Rename(tmp, dst)
}

func checkPVH(name string) error {
	f, err := elf.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s is not an x86-64 kernel", name)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			continue
		}
		// XEN_ELFNOTE_PHYS32_ENTRY (18) in a note named "Xen".
		for len(b) >= 12 {
			nsz := int(f.ByteOrder.Uint32(b[0:]))
			dsz := int(f.ByteOrder.Uint32(b[4:]))
			typ := f.ByteOrder.Uint32(b[8:])
			name := b[12:]
			if nsz > len(name) {
				break
			}
			if typ == 18 && string(bytes.TrimRight(name[:nsz], "\x00")) == "Xen" {
				return nil
			}
			adv := 12 + (nsz+3)&^3 + (dsz+3)&^3
			if adv > len(b) {
				break
			}
			b = b[adv:]
		}
	}
	return fmt.Errorf("%s has no PVH entry point", name)
}

func xzDecompress(ctx context.Context) func(io.Reader, io.Writer) error {
	return func(r io.Reader, w io.Writer) error {
		var cmd *exec.Cmd
		if p, err := exec.LookPath("xz"); err == nil {
			cmd = exec.CommandContext(ctx, p, "-dc")
		} else if p, err := findBusybox(); err == nil {
			cmd = exec.CommandContext(ctx, p, "unxz", "-c")
		} else {
			return fmt.Errorf("neither xz nor busybox found to decompress the kernel (apt-get install xz-utils)")
		}
		cmd.Stdin, cmd.Stdout = r, w
		return cmd.Run()
	}
}

func gzipDecompress(r io.Reader, w io.Writer) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	zr.Multistream(false)
	_, err = io.Copy(w, zr)
	return err
}
