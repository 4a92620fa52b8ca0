# blkd: the two commands of the README, and the usual targets.
#   make demo    runs blkd's main job end to end
#   make check   builds, then runs every test in a normal and an
#                AddressSanitizer+UBSan build
# Both install missing Debian packages first (scripts/install-deps).

MESON_TEST = meson test --print-errorlogs --num-processes 2

.PHONY: all check check-unit check-iotests demo bench clean

all: build/build.ninja
	ninja -C build

build/build.ninja build-asan/build.ninja:
	./configure || { ./scripts/install-deps && ./configure; }

check: build/build.ninja build-asan/build.ninja
	ninja -C build
	ninja -C build-asan
	$(MESON_TEST) -C build; a=$$?; \
	$(MESON_TEST) -C build-asan; b=$$?; \
	/usr/bin/python3 scripts/test-summary build build-asan; c=$$?; \
	test $$a = 0 -a $$b = 0 -a $$c = 0

check-unit: build/build.ninja
	ninja -C build
	$(MESON_TEST) -C build --suite unit

check-iotests: build/build.ninja
	ninja -C build
	$(MESON_TEST) -C build --suite iotests

demo: all
	/usr/bin/python3 scripts/demo build/blkd

# Each compares blkd with qemu-storage-daemon (and cp) in the same run;
# bench/README.md has the figures and how to read them.
bench: all
	build/bench/hbitmap
	/usr/bin/python3 bench/nbd.py build/blkd
	/usr/bin/python3 bench/bitmaps.py build/blkd
	/usr/bin/python3 bench/nbd_bitmap.py build/blkd
	/usr/bin/python3 bench/backup.py build/blkd

clean:
	rm -rf build build-asan
