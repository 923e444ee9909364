//! btrfs storage: a configured mount or a loop image, subvolumes via ioctls.
