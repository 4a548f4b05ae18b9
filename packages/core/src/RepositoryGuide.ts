/** The `bendsave.md` guide written into every repository for humans who find it. */
export const REPOSITORY_GUIDE = `# bendsave repository

This location holds backups made by bendsave (format v1). Do not edit, move or
delete anything here by hand: use the bendsave commands below.

## What is here

| path | what it is |
| --- | --- |
| \`config.json\` | repository format version, minimum reader version, feature flags, block size |
| \`bendsave.md\` | this guide |
| \`manifests/<YYYYMMDD_HHMMSS>.manifest\` | one protobuf \`BackupManifest\` per backup, named by its UTC time; a backup exists exactly when its manifest exists |
| \`data/<sha256>\` | content-addressed blocks: file data cut into 8 MiB blocks, and the pages of each backup's file list and meta snapshot; each named by the SHA-256 of its bytes |
| \`leases/\` | who is working here right now (running backups, restores, clones, a vacuum); each lease expires a few minutes after its process stops renewing it |
| \`checkpoints/<YYYYMMDD_HHMMSS>.checkpoint\` | progress of an unfinished backup (same encoding as a manifest); running the same backup command again resumes it, \`bendsave abandon\` drops it |
| \`pins/<id>/\` | backups kept whatever the retention policy says (clones made from them, or pinned by hand) |

The full format (enough to write a reader) is docs/repository-format.md in the
bendsave source.

## How to use it

    bendsave list <this repository>                     # committed and incomplete backups
    bendsave abandon <this repository> <id>             # drop an incomplete backup
    bendsave verify <this repository> --read-data=10
    bendsave restore --from <this repository>/manifests/<id>.manifest --to cluster.toml            # dry run: prints the plan
    bendsave restore --from <this repository>/manifests/<id>.manifest --to cluster.toml --confirm  # restores
`
