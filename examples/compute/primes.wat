;; Counts the primes in one slice of the integers, as primes.c does, written in the
;; WebAssembly text format so that `nodus demo` and `nodus bench compute` need no C
;; toolchain: unit N covers [N*SPAN, (N+1)*SPAN). argv: N [SPAN] (SPAN defaults to
;; 10000). Prints "N count\n". Imports only WASI preview 1's args and fd_write.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  ;; 0: argc, 4: argv bytes, 16..80: argv pointers, 256..1280: argv text,
  ;; 2048..2100: the line printed, 3000: its iovec, 3008: bytes written.
  (memory (export "memory") 1)
  (func $parse (param $p i32) (result i64) (local $n i64) (local $c i32)
    (block $done
      (loop $next
        (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (br_if $done (i32.ge_u (local.get $c) (i32.const 10)))
        (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10)) (i64.extend_i32_u (local.get $c))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $n))
  (func $is_prime (param $n i64) (result i32) (local $d i64)
    (if (i64.lt_u (local.get $n) (i64.const 2)) (then (return (i32.const 0))))
    (if (i64.lt_u (local.get $n) (i64.const 4)) (then (return (i32.const 1))))
    (if (i64.eqz (i64.rem_u (local.get $n) (i64.const 2))) (then (return (i32.const 0))))
    (local.set $d (i64.const 3))
    (block $out
      (loop $try
        (br_if $out (i64.gt_u (i64.mul (local.get $d) (local.get $d)) (local.get $n)))
        (if (i64.eqz (i64.rem_u (local.get $n) (local.get $d))) (then (return (i32.const 0))))
        (local.set $d (i64.add (local.get $d) (i64.const 2)))
        (br $try)))
    (i32.const 1))
  ;; Writes $v in decimal so that it ends just before $end; returns where it starts.
  (func $itoa (param $v i64) (param $end i32) (result i32)
    (loop $digit
      (local.set $end (i32.sub (local.get $end) (i32.const 1)))
      (i32.store8 (local.get $end)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (local.get $end))
  (func (export "_start")
    (local $n i64) (local $span i64) (local $k i64) (local $end i64) (local $count i64) (local $at i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.or (i32.lt_u (i32.load (i32.const 0)) (i32.const 2))
                (i32.or (i32.gt_u (i32.load (i32.const 0)) (i32.const 16))
                        (i32.gt_u (i32.load (i32.const 4)) (i32.const 1024))))
      (then unreachable))
    (drop (call $args_get (i32.const 16) (i32.const 256)))
    (local.set $n (call $parse (i32.load (i32.const 20))))
    (local.set $span (i64.const 10000))
    (if (i32.ge_u (i32.load (i32.const 0)) (i32.const 3))
      (then (local.set $span (call $parse (i32.load (i32.const 24))))))
    (local.set $k (i64.mul (local.get $n) (local.get $span)))
    (local.set $end (i64.add (local.get $k) (local.get $span)))
    (block $o
      (loop $each
        (br_if $o (i64.ge_u (local.get $k) (local.get $end)))
        (local.set $count (i64.add (local.get $count) (i64.extend_i32_u (call $is_prime (local.get $k)))))
        (local.set $k (i64.add (local.get $k) (i64.const 1)))
        (br $each)))
    (i32.store8 (i32.const 2099) (i32.const 10))
    (local.set $at (call $itoa (local.get $count) (i32.const 2099)))
    (local.set $at (i32.sub (local.get $at) (i32.const 1)))
    (i32.store8 (local.get $at) (i32.const 32))
    (local.set $at (call $itoa (local.get $n) (local.get $at)))
    (i32.store (i32.const 3000) (local.get $at))
    (i32.store (i32.const 3004) (i32.sub (i32.const 2100) (local.get $at)))
    (drop (call $fd_write (i32.const 1) (i32.const 3000) (i32.const 1) (i32.const 3008)))))
